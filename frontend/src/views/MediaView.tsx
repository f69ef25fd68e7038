// The media a run logged (images, figures, audio, video), a panel per tag
// with a slider over the steps. New media arrive over the live stream.

import { useState } from "preact/hooks";

import { describeError } from "../api";
import { Message } from "../components/common";
import { formatBytes, formatDateTime, formatNumber } from "../format";
import { updateQuery } from "../router";
import type { RunSession } from "../session";
import type { MediaEntry } from "../types";

function groupByTag(entries: MediaEntry[]): Map<string, MediaEntry[]> {
  const groups = new Map<string, MediaEntry[]>();
  for (const entry of entries) {
    if (!groups.has(entry.tag)) groups.set(entry.tag, []);
    groups.get(entry.tag)!.push(entry);
  }
  // Steps in order; entries without a step keep their logged order, after those with one.
  for (const list of groups.values()) {
    const order = new Map(list.map((entry, index) => [entry, index]));
    list.sort((a, b) => {
      if (a.step === null && b.step === null) return order.get(a)! - order.get(b)!;
      if (a.step === null) return 1;
      if (b.step === null) return -1;
      return a.step - b.step || order.get(a)! - order.get(b)!;
    });
  }
  return new Map([...groups.entries()].sort(([a], [b]) => a.localeCompare(b, undefined, { numeric: true })));
}

function stepText(entry: MediaEntry): string {
  return entry.step === null ? "no step" : `step ${formatNumber(entry.step)}`;
}

function MediaItem({ entry }: { entry: MediaEntry }) {
  const name = entry.file.slice(entry.file.lastIndexOf("/") + 1);
  const mime = entry.mime ?? "";
  // The key makes the browser load the new file when the slider moves, instead of keeping the old one.
  if (mime.startsWith("image/")) return <img key={entry.url} class="media-image" src={entry.url} alt={`${entry.tag}, ${stepText(entry)}`} />;
  if (mime.startsWith("audio/")) return <audio key={entry.url} class="media-audio" controls preload="metadata" src={entry.url} />;
  if (mime.startsWith("video/")) return <video key={entry.url} class="media-video" controls preload="metadata" src={entry.url} />;
  return (
    <p class="media-file">
      A {mime || "file"} the browser does not show here: <a href={`${entry.url}?download=1`} download={name}>download {name}</a>
    </p>
  );
}

function MediaPanel({ tag, entries }: { tag: string; entries: MediaEntry[] }) {
  // The chosen entry, by URL so that it stays chosen when others arrive; null follows the newest.
  const [chosen, setChosen] = useState<string | null>(null);
  const last = entries.length - 1;
  const found = chosen === null ? -1 : entries.findIndex((entry) => entry.url === chosen);
  const index = found >= 0 ? found : last;
  const entry = entries[index];
  const choose = (next: number) => setChosen(next >= last ? null : entries[Math.max(0, next)].url);
  return (
    <section class="chart-card media-card" data-tag={tag} data-count={entries.length}>
      <div class="chart-title">
        <span class="chart-name" title={tag}>
          {tag}
        </span>
        <span class="chart-note info">
          {entries.length} {entries.length === 1 ? "file" : "files"}
        </span>
      </div>
      <div class="media-controls">
        <button type="button" class="button" aria-label={`Previous ${tag}`} disabled={index === 0} onClick={() => choose(index - 1)}>
          ‹
        </button>
        <input
          type="range"
          min={0}
          max={last}
          step={1}
          value={index}
          disabled={entries.length < 2}
          aria-label={`Step of ${tag}`}
          aria-valuetext={stepText(entry)}
          onInput={(event) => choose(Number((event.target as HTMLInputElement).value))}
        />
        <button type="button" class="button" aria-label={`Next ${tag}`} disabled={index === last} onClick={() => choose(index + 1)}>
          ›
        </button>
        <output class="media-step" data-testid="media-step">
          {stepText(entry)}
        </output>
        {chosen === null && entries.length > 1 && <span class="muted small">newest</span>}
      </div>
      <div class="media-item">
        <MediaItem entry={entry} />
      </div>
      <div class="media-meta muted small">
        <span title={entry.file}>{entry.file}</span> · {entry.mime} · {formatBytes(entry.bytes)} · logged {formatDateTime(entry.logged_at)}
      </div>
    </section>
  );
}

export function MediaView({ session, query }: { session: RunSession; query: URLSearchParams }) {
  const filter = query.get("filter") ?? "";
  const media = session.media;
  if (session.mediaError && !media) return <Message kind="error">Cannot load the media of this run: {describeError(session.mediaError)}</Message>;
  if (!media) return <Message kind="loading">Loading media…</Message>;
  if (!media.length) {
    return (
      <Message kind="empty">
        {session.isLive
          ? "This run has logged no media yet. Images, audio and video appear here as soon as it logs them."
          : "This run logged no media (log_image, log_figure, log_audio, log_video)."}
      </Message>
    );
  }
  const groups = groupByTag(media);
  const words = filter.toLowerCase().split(/\s+/).filter(Boolean);
  const shown = [...groups.entries()].filter(([tag]) => words.every((word) => tag.toLowerCase().includes(word)));
  return (
    <div class="media" data-testid="media">
      <div class="toolbar">
        <input
          type="search"
          class="filter"
          placeholder="Filter media tags"
          aria-label="Filter media tags"
          value={filter}
          onInput={(event) => updateQuery({ filter: (event.target as HTMLInputElement).value || null })}
        />
        <span class="muted count">
          {media.length} files in {groups.size} {groups.size === 1 ? "tag" : "tags"}
        </span>
      </div>
      {shown.length === 0 && <Message kind="empty">No media tag matches “{filter}”.</Message>}
      <div class="media-grid">
        {shown.map(([tag, entries]) => (
          <MediaPanel key={tag} tag={tag} entries={entries} />
        ))}
      </div>
    </div>
  );
}
