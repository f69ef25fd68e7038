// The log tails of a run (run.log, console.log), extended live.

import { useEffect, useRef, useState } from "preact/hooks";

import { runUrl } from "../api";
import { ErrorMessage, Message } from "../components/common";
import { updateQuery } from "../router";
import { LOG_TAIL_LINES, type RunSession } from "../session";

function levelOf(line: string): string {
  const match = line.match(/\[(ERROR|WARN(?:ING)?|INFO|DEBUG|CRITICAL)\]/);
  if (!match) return "";
  const level = match[1];
  if (level === "CRITICAL" || level === "ERROR") return "log-error";
  if (level.startsWith("WARN")) return "log-warn";
  if (level === "DEBUG") return "log-debug";
  return "";
}

export function LogView({ session, query }: { session: RunSession; query: URLSearchParams }) {
  const files = session.details?.logs ?? [];
  const file = files.includes(query.get("file") ?? "") ? query.get("file")! : files[0];
  const [follow, setFollow] = useState(true);
  const box = useRef<HTMLPreElement>(null);
  const lines = file ? session.logs.get(file) : undefined;

  useEffect(() => {
    const element = box.current;
    if (element && follow) element.scrollTop = element.scrollHeight;
  }, [lines?.length, file, follow]);

  if (!files.length) {
    return (
      <Message kind="empty">
        This run has no log files yet. run.log appears once the run calls <code>info</code>, <code>warn</code> or{" "}
        <code>fail</code>; console.log when it captures the console.
      </Message>
    );
  }
  return (
    <div class="logs">
      <div class="toolbar">
        <div class="segmented" role="group" aria-label="Log file">
          {files.map((name) => (
            <button type="button" key={name} class={name === file ? "on" : ""} aria-pressed={name === file} onClick={() => updateQuery({ file: name })}>
              {name}
            </button>
          ))}
        </div>
        <label class="checkbox">
          <input type="checkbox" checked={follow} onChange={(event) => setFollow((event.target as HTMLInputElement).checked)} />
          Follow new lines
        </label>
        <span class="muted">
          {lines ? `${lines.length} lines (the last ${LOG_TAIL_LINES} at load, then new ones as they are written)` : ""}
        </span>
        {file && (
          <a class="button" href={`${runUrl(session.experiment, session.run, "logs", file)}`} target="_blank" rel="noopener">
            Whole file
          </a>
        )}
      </div>
      {session.logsError && !lines ? <ErrorMessage error={session.logsError} subject="the logs" /> : null}
      {lines === undefined && !session.logsError && <Message kind="loading">Loading {file}…</Message>}
      {lines !== undefined &&
        (lines.length === 0 ? (
          <Message kind="empty">{file} is empty.</Message>
        ) : (
          <pre class="log" ref={box} data-testid="log">
            {lines.map((line, index) => (
              <div class={`log-line ${levelOf(line)}`} key={index}>
                {line}
              </div>
            ))}
          </pre>
        ))}
    </div>
  );
}
