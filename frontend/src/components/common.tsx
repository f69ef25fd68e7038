// Small building blocks shared by the views.

import type { AnchorHTMLAttributes, ComponentChildren } from "preact";
import { useState } from "preact/hooks";

import { ApiError, NetworkError, describeError } from "../api";
import { formatValue } from "../format";
import { followLink } from "../router";
import type { RunStatus } from "../types";

/** Render a link inside the dashboard, followed without a page load but a real URL for new tabs. */
export function Link(props: AnchorHTMLAttributes<HTMLAnchorElement> & { href: string }) {
  const { href, onClick, ...rest } = props;
  return (
    <a
      href={href}
      onClick={(event) => {
        if (onClick) (onClick as (event: MouseEvent) => void)(event);
        followLink(event, href);
      }}
      {...rest}
    />
  );
}

/**
 * Render a run's name (or another label) on one line. A name longer than its
 * box (`.run-label` in styles.css) is cut with an ellipsis, and hovering shows it whole.
 */
export function RunLabel({ text, title }: { text: string; title?: string }) {
  return (
    <span class="run-label" title={title ?? text}>
      {text}
    </span>
  );
}

export function StatusBadge({ status, stale }: { status: RunStatus; stale?: boolean }) {
  if (status === "RUNNING" && stale) {
    return (
      <span class="status status-stale" title="Status is RUNNING, but the run has shown no sign of life for a while">
        stale
      </span>
    );
  }
  if (status === "RUNNING") {
    return (
      <span class="status status-running" title="Running: updates arrive live">
        <span class="live-dot" aria-hidden="true" />
        running
      </span>
    );
  }
  if (status === null) {
    return (
      <span class="status status-unknown" title="run.yaml is missing or unreadable">
        unknown
      </span>
    );
  }
  return <span class={`status status-${status.toLowerCase()}`}>{status.toLowerCase()}</span>;
}

/** Render the "live" badge of a view that follows a run over its stream. */
export function LiveBadge({ state }: { state: string }) {
  if (state === "open") {
    return (
      <span class="live-badge" title="Following the run: new rows and log lines arrive as they are written">
        <span class="live-dot" aria-hidden="true" />
        live
      </span>
    );
  }
  if (state === "polling") {
    return (
      <span class="live-badge polling" title="Too many live streams are open: new rows are fetched every few seconds">
        <span class="live-dot" aria-hidden="true" />
        live (polling)
      </span>
    );
  }
  if (state === "connecting" || state === "reconnecting") {
    return <span class="live-badge waiting">{state === "connecting" ? "connecting…" : "reconnecting…"}</span>;
  }
  return null;
}

export function Tags({ tags }: { tags: string[] | null | undefined }) {
  if (!tags || !tags.length) return null;
  return (
    <span class="tags">
      {tags.map((tag) => (
        <span class="tag" key={tag}>
          {tag}
        </span>
      ))}
    </span>
  );
}

/** Render a sentence in place of content: loading, empty, or an error. */
export function Message({ kind, children }: { kind: "loading" | "empty" | "error"; children: ComponentChildren }) {
  return (
    <div class={`message message-${kind}`} role={kind === "error" ? "alert" : "status"}>
      {children}
    </div>
  );
}

/** Explain an error of a request for a person, with what to do about it. */
export function ErrorMessage({ error, subject }: { error: unknown; subject: string }) {
  let text: string;
  if (error instanceof NetworkError) text = `Cannot load ${subject}: the server does not respond. The page retries by itself.`;
  // The server's 404 message names the same thing again, so it is left out.
  else if (error instanceof ApiError && error.status === 404) text = `${subject[0].toUpperCase()}${subject.slice(1)} not found.`;
  else text = `Cannot load ${subject}: ${describeError(error)}`;
  return <Message kind="error">{text}</Message>;
}

export interface Tab {
  id: string;
  label: ComponentChildren;
  href: string;
}

export function Tabs({ tabs, active }: { tabs: Tab[]; active: string }) {
  return (
    <nav class="tabs" aria-label="Views">
      {tabs.map((tab) => (
        <Link key={tab.id} href={tab.href} class={tab.id === active ? "tab active" : "tab"} aria-current={tab.id === active ? "page" : undefined}>
          {tab.label}
        </Link>
      ))}
    </nav>
  );
}

/** Toggle chips: pick which of `options` are on. */
export function Chips(props: { label: string; options: string[]; selected: string[]; onChange(selected: string[]): void }) {
  const { label, options, selected, onChange } = props;
  if (!options.length) return null;
  const toggle = (option: string) => {
    onChange(selected.includes(option) ? selected.filter((item) => item !== option) : [...selected, option]);
  };
  return (
    <div class="chips" role="group" aria-label={label}>
      <span class="chips-label">{label}</span>
      {options.map((option) => (
        <button
          type="button"
          key={option}
          class={selected.includes(option) ? "chip on" : "chip"}
          aria-pressed={selected.includes(option)}
          onClick={() => toggle(option)}
        >
          {option}
        </button>
      ))}
    </div>
  );
}

function isContainer(value: unknown): value is Record<string, unknown> | unknown[] {
  return typeof value === "object" && value !== null;
}

/** Render a nested value (config, JSON) as a tree whose branches fold. */
export function ValueTree({ value, openDepth = 2 }: { value: unknown; openDepth?: number }) {
  const [generation, setGeneration] = useState(0);
  const [depth, setDepth] = useState(openDepth);
  if (!isContainer(value)) return <code class="tree-leaf">{formatValue(value)}</code>;
  return (
    <div class="tree">
      <div class="tree-actions">
        <button type="button" class="link-button" onClick={() => { setDepth(99); setGeneration(generation + 1); }}>
          Expand all
        </button>
        <button type="button" class="link-button" onClick={() => { setDepth(0); setGeneration(generation + 1); }}>
          Collapse all
        </button>
      </div>
      <TreeBranch key={generation} value={value} depth={0} openDepth={depth} />
    </div>
  );
}

function TreeBranch({ value, depth, openDepth }: { value: Record<string, unknown> | unknown[]; depth: number; openDepth: number }) {
  const entries = Array.isArray(value) ? value.map((item, index) => [String(index), item] as const) : Object.entries(value);
  if (!entries.length) return <span class="tree-empty">{Array.isArray(value) ? "[ ]" : "{ }"}</span>;
  return (
    <ul class="tree-branch">
      {entries.map(([key, item]) => (
        <li key={key}>
          {isContainer(item) ? (
            <details open={depth < openDepth}>
              <summary>
                <span class="tree-key">{key}</span>
                <span class="tree-count">{Array.isArray(item) ? `[${item.length}]` : `{${Object.keys(item).length}}`}</span>
              </summary>
              <TreeBranch value={item} depth={depth + 1} openDepth={openDepth} />
            </details>
          ) : (
            <span class="tree-pair">
              <span class="tree-key">{key}</span>
              <code class={`tree-leaf type-${item === null ? "null" : typeof item}`}>{formatValue(item)}</code>
            </span>
          )}
        </li>
      ))}
    </ul>
  );
}
