// Previews of a run's files: images, audio, video, text, JSON, CSV, Parquet and Arrow.

import type { ComponentChildren } from "preact";
import { useEffect, useState } from "preact/hooks";

import { describeError, request } from "../api";
import { Message, ValueTree } from "../components/common";
import { formatBytes, formatValue } from "../format";
import type { ArtifactEntry } from "../types";

/** Bytes of a text file fetched for its preview (with an HTTP Range request). */
const TEXT_PREVIEW_BYTES = 256 * 1024;
/** A JSON file up to this size is parsed and shown as a tree; a larger one as text. */
const JSON_TREE_BYTES = 2 * 1024 * 1024;
/** An Arrow file up to this size is fetched whole for its preview. */
const ARROW_PREVIEW_BYTES = 32 * 1024 * 1024;
/** Rows shown of a table (CSV, Parquet, Arrow). */
const TABLE_ROWS = 100;

type Kind = "image" | "audio" | "video" | "json" | "csv" | "parquet" | "arrow" | "text" | "none";

const TEXT_EXTENSIONS = new Set([
  "txt", "log", "md", "rst", "yaml", "yml", "toml", "ini", "cfg", "conf", "py", "sh", "js", "ts", "json", "jsonl",
  "xml", "html", "htm", "svg", "tex", "r", "sql", "c", "h", "cpp", "rs", "go", "java", "ipynb", "env", "diff", "patch",
]);

export function previewKind(entry: ArtifactEntry): Kind {
  const ext = entry.ext.toLowerCase();
  const mime = entry.mime.toLowerCase();
  if (ext === "parquet") return "parquet";
  if (ext === "arrow" || ext === "feather" || ext === "ipc") return "arrow";
  if (ext === "csv" || ext === "tsv") return "csv";
  if (ext === "json") return "json";
  if (mime.startsWith("image/")) return "image";
  if (mime.startsWith("audio/")) return "audio";
  if (mime.startsWith("video/")) return "video";
  if (mime.startsWith("text/") || TEXT_EXTENSIONS.has(ext) || mime === "application/json" || mime === "application/yaml") return "text";
  return "none";
}

/** Fetch the first `limit` bytes of a file as text; returns the text and whether it was cut. */
async function fetchText(entry: ArtifactEntry, limit: number): Promise<{ text: string; cut: boolean }> {
  if (entry.size === 0) return { text: "", cut: false };
  const headers = entry.size > limit ? { Range: `bytes=0-${limit - 1}` } : undefined;
  const response = await request(entry.url, { headers });
  const buffer = await response.arrayBuffer();
  const cut = entry.size > buffer.byteLength;
  // A cut can split a multi-byte character: the decoder replaces it rather than failing.
  return { text: new TextDecoder("utf-8", { fatal: false }).decode(buffer), cut };
}

/** Parse CSV (RFC 4180 quoting) into rows, at most `maxRows`. */
export function parseCsv(text: string, delimiter: string, maxRows: number): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = "";
  let quoted = false;
  for (let i = 0; i < text.length && rows.length < maxRows; i++) {
    const char = text[i];
    if (quoted) {
      if (char === '"' && text[i + 1] === '"') {
        field += '"';
        i += 1;
      } else if (char === '"') quoted = false;
      else field += char;
    } else if (char === '"') quoted = true;
    else if (char === delimiter) {
      row.push(field);
      field = "";
    } else if (char === "\n" || char === "\r") {
      if (char === "\r" && text[i + 1] === "\n") i += 1;
      row.push(field);
      rows.push(row);
      row = [];
      field = "";
    } else field += char;
  }
  if ((field !== "" || row.length) && rows.length < maxRows) {
    row.push(field);
    rows.push(row);
  }
  return rows;
}

function DataTable({ columns, rows, note }: { columns: string[]; rows: unknown[][]; note: ComponentChildren }) {
  return (
    <div class="preview-table">
      <p class="muted small">{note}</p>
      <div class="table-scroll">
        <table class="grid-table compact" data-testid="preview-table">
          <thead>
            <tr>
              {columns.map((column, index) => (
                <th key={index}>{column}</th>
              ))}
            </tr>
          </thead>
          <tbody>
            {rows.map((row, r) => (
              <tr key={r}>
                {row.map((cell, c) => (
                  <td key={c} class={typeof cell === "number" || typeof cell === "bigint" ? "num" : ""}>
                    {cellText(cell)}
                  </td>
                ))}
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </div>
  );
}

function cellText(value: unknown): string {
  if (value instanceof Date) return value.toISOString();
  if (value instanceof Uint8Array) return `<${value.length} bytes>`;
  if (typeof value === "object" && value !== null) {
    return JSON.stringify(value, (_key, item) => (typeof item === "bigint" ? item.toString() : item));
  }
  return formatValue(value);
}

interface Loaded {
  node?: ComponentChildren;
  error?: unknown;
}

async function loadPreview(entry: ArtifactEntry, kind: Kind): Promise<ComponentChildren> {
  switch (kind) {
    case "text": {
      const { text, cut } = await fetchText(entry, TEXT_PREVIEW_BYTES);
      return (
        <>
          {cut && <p class="muted small">The first {formatBytes(TEXT_PREVIEW_BYTES)} of {formatBytes(entry.size)}; download the file for the rest.</p>}
          {text ? <pre class="text-preview" data-testid="text-preview">{text}</pre> : <Message kind="empty">This file is empty.</Message>}
        </>
      );
    }
    case "json": {
      if (entry.size > JSON_TREE_BYTES) return loadPreview(entry, "text");
      const { text } = await fetchText(entry, JSON_TREE_BYTES);
      try {
        return <ValueTree value={JSON.parse(text)} />;
      } catch (error) {
        return (
          <>
            <p class="muted small">Not valid JSON ({describeError(error)}); shown as text.</p>
            <pre class="text-preview">{text}</pre>
          </>
        );
      }
    }
    case "csv": {
      const { text, cut } = await fetchText(entry, TEXT_PREVIEW_BYTES);
      const delimiter = entry.ext.toLowerCase() === "tsv" ? "\t" : ",";
      let rows = parseCsv(text, delimiter, TABLE_ROWS + 2);
      // The last line of a cut file is incomplete.
      if (cut && rows.length > 1) rows = rows.slice(0, -1);
      if (!rows.length) return <Message kind="empty">This file is empty.</Message>;
      const [header, ...body] = rows;
      const shown = body.slice(0, TABLE_ROWS);
      const more = body.length > shown.length || cut;
      return <DataTable columns={header} rows={shown} note={`${more ? `The first ${shown.length} rows` : `${shown.length} rows`}.`} />;
    }
    case "parquet": {
      const { asyncBufferFromUrl, parquetMetadataAsync, parquetReadObjects } = await import("hyparquet");
      const { compressors } = await import("hyparquet-compressors");
      const file = await asyncBufferFromUrl({ url: new URL(entry.url, location.href).href, byteLength: entry.size, requestInit: { credentials: "same-origin" } });
      const metadata = await parquetMetadataAsync(file);
      const rows = await parquetReadObjects({ file, metadata, rowStart: 0, rowEnd: TABLE_ROWS, compressors });
      const columns = metadata.schema.slice(1).filter((element) => !element.num_children).map((element) => element.name);
      const total = Number(metadata.num_rows);
      return (
        <DataTable
          columns={columns}
          rows={rows.map((row) => columns.map((column) => row[column]))}
          note={`${rows.length < total ? `The first ${rows.length} of ${total} rows` : `${total} rows`}, ${columns.length} columns.`}
        />
      );
    }
    case "arrow": {
      if (entry.size > ARROW_PREVIEW_BYTES) return <Message kind="empty">This Arrow file is too large to preview here ({formatBytes(entry.size)}); download it.</Message>;
      const { RecordBatchReader } = await import("apache-arrow");
      const response = await request(entry.url);
      const bytes = new Uint8Array(await response.arrayBuffer());
      const rows: unknown[][] = [];
      let columns: string[] = [];
      let total = 0;
      let partial = false;
      try {
        // A live segment may end in a half-written batch: show the batches before it.
        const reader = RecordBatchReader.from(bytes);
        for (const batch of reader) {
          columns = batch.schema.fields.map((field) => field.name);
          total += batch.numRows;
          for (let i = 0; i < batch.numRows && rows.length < TABLE_ROWS; i++) {
            rows.push(columns.map((_name, c) => batch.getChildAt(c)?.get(i)));
          }
        }
      } catch {
        partial = true;
      }
      if (!columns.length) return <Message kind="empty">No complete record batch in this file yet.</Message>;
      return (
        <DataTable
          columns={columns}
          rows={rows}
          note={`${rows.length < total ? `The first ${rows.length} of ${total} rows` : `${total} rows`}${partial ? "; the file ends in a batch still being written" : ""}.`}
        />
      );
    }
    default:
      return null;
  }
}

export function Preview({ entry }: { entry: ArtifactEntry }) {
  const kind = previewKind(entry);
  const [loaded, setLoaded] = useState<Loaded>({});
  useEffect(() => {
    if (kind === "image" || kind === "audio" || kind === "video" || kind === "none") return;
    let cancelled = false;
    loadPreview(entry, kind).then(
      (node) => !cancelled && setLoaded({ node }),
      (error) => !cancelled && setLoaded({ error }),
    );
    return () => {
      cancelled = true;
    };
  }, [entry.url, kind]);

  if (kind === "image") return <img class="image-preview" src={entry.url} alt={entry.path} data-testid="image-preview" />;
  if (kind === "audio") return <audio controls src={entry.url} />;
  if (kind === "video") return <video controls src={entry.url} class="video-preview" />;
  if (kind === "none") return <Message kind="empty">No preview for {entry.mime} files; download it to open it.</Message>;
  if (loaded.error) return <Message kind="error">Cannot preview {entry.name}: {describeError(loaded.error)}</Message>;
  if (loaded.node === undefined) return <Message kind="loading">Loading the preview…</Message>;
  return <div class="preview-body">{loaded.node}</div>;
}
