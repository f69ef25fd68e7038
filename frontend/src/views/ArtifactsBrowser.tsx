// The files of a run: artifacts and the run's own files, with previews.

import { useEffect, useState } from "preact/hooks";

import { getJson, runUrl } from "../api";
import { ErrorMessage, Message } from "../components/common";
import { formatAgo, formatBytes, formatDateTime } from "../format";
import { useResource } from "../hooks";
import { updateQuery } from "../router";
import type { RunSession } from "../session";
import type { ArtifactEntry } from "../types";
import { Preview } from "./Preview";

/** Return the key of an entry in the URL. Artifacts and run files have separate path spaces. */
function entryKey(entry: ArtifactEntry): string {
  return `${entry.is_default ? "run" : "artifacts"}:${entry.path}`;
}

function FileList({ entries, selected, title }: { entries: ArtifactEntry[]; selected: string | null; title: string }) {
  return (
    <section class="file-section">
      <h3>{title}</h3>
      {entries.length === 0 ? (
        <p class="muted small">None.</p>
      ) : (
        <ul class="file-list">
          {entries.map((entry) => {
            const key = entryKey(entry);
            const slash = entry.path.lastIndexOf("/");
            return (
              <li key={key} class={key === selected ? "selected" : ""}>
                <button type="button" class="file-button" onClick={() => updateQuery({ file: key })} title={entry.path} data-path={entry.path}>
                  {slash >= 0 && <span class="muted">{entry.path.slice(0, slash + 1)}</span>}
                  {entry.name}
                </button>
                <span class="file-size muted">{formatBytes(entry.size)}</span>
              </li>
            );
          })}
        </ul>
      )}
    </section>
  );
}

export function ArtifactsBrowser({ session, query }: { session: RunSession; query: URLSearchParams }) {
  const [version, setVersion] = useState(session.artifactsVersion);
  useEffect(() => setVersion(session.artifactsVersion), [session.artifactsVersion]);
  const list = useResource(
    (signal) => getJson<ArtifactEntry[]>(runUrl(session.experiment, session.run, "artifacts"), signal),
    [session.experiment, session.run, version],
  );
  if (list.error && !list.data) return <ErrorMessage error={list.error} subject="the run's files" />;
  if (!list.data) return <Message kind="loading">Loading files…</Message>;

  const entries = [...list.data].sort((a, b) => a.path.localeCompare(b.path));
  const artifacts = entries.filter((entry) => !entry.is_default);
  const runFiles = entries.filter((entry) => entry.is_default);
  const selectedKey = query.get("file");
  const selected = entries.find((entry) => entryKey(entry) === selectedKey) ?? null;

  return (
    <div class="artifacts">
      <div class="file-pane">
        <FileList entries={artifacts} selected={selectedKey} title={`Artifacts (${artifacts.length})`} />
        <FileList entries={runFiles} selected={selectedKey} title={`Run files (${runFiles.length})`} />
      </div>
      <div class="preview-pane">
        {selected ? (
          <>
            <div class="preview-header">
              <strong class="preview-name">{selected.path}</strong>
              <span class="muted">
                {formatBytes(selected.size)} · {selected.mime} · modified <span title={formatDateTime(selected.modified)}>{formatAgo(selected.modified)}</span>
              </span>
              <a class="button" href={`${selected.url}?download=1`} data-testid="download">
                Download
              </a>
            </div>
            <Preview key={`${entryKey(selected)}@${selected.modified}`} entry={selected} />
          </>
        ) : selectedKey ? (
          <Message kind="error">No file {selectedKey.replace(/^[a-z]+:/, "")} in this run; it may have been deleted.</Message>
        ) : (
          <Message kind="empty">
            {artifacts.length ? "Pick a file to preview it." : "This run saved no artifacts. Its own files are listed on the left."}
          </Message>
        )}
      </div>
    </div>
  );
}
