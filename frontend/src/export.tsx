// Downloads of the data a view shows: a chart's metric as CSV (one file, a
// `run` column telling the runs apart) or Parquet (one file per run, as the
// server writes it), and the runs table as CSV.

import { useRef, useState } from "preact/hooks";

import { describeError, request, runUrl, withQuery } from "./api";
import type { ChartRun } from "./charts/MetricChart";
import { parseTime } from "./format";
import type { Run } from "./types";

/** Save `blob` as a file named `name` through the browser's download. */
export function saveFile(name: string, blob: Blob): void {
  const url = URL.createObjectURL(blob);
  const link = document.createElement("a");
  link.href = url;
  link.download = name;
  link.style.display = "none";
  document.body.appendChild(link);
  link.click();
  link.remove();
  // The download has started once click() returns; the URL can go after the event loop turns.
  window.setTimeout(() => URL.revokeObjectURL(url), 1000);
}

/** Return a name safe for a file: `/`, `\` and other reserved characters become `_`. */
export function fileName(...parts: string[]): string {
  return parts.join("-").replace(/[\\/:*?"<>|\u0000-\u001f]+/g, "_");
}

/** Quote a CSV field when it contains a comma, a quote, a line break, or leading or trailing spaces (RFC 4180). */
export function csvField(value: unknown): string {
  if (value === null || value === undefined) return "";
  let text: string;
  if (typeof value === "string") text = value;
  else if (typeof value === "object") text = JSON.stringify(value);
  else text = String(value);
  return /[",\r\n]|^\s|\s$/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

export function csvLine(fields: unknown[]): string {
  return fields.map(csvField).join(",");
}

/** Split CSV text into records of fields (RFC 4180: quoted fields may hold commas, quotes and line breaks). */
export function parseCsv(text: string): string[][] {
  const records: string[][] = [];
  let record: string[] = [];
  let field = "";
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const char = text[i];
    if (quoted) {
      if (char === '"' && text[i + 1] === '"') {
        field += '"';
        i++;
      } else if (char === '"') {
        quoted = false;
      } else {
        field += char;
      }
    } else if (char === '"') {
      quoted = true;
    } else if (char === ",") {
      record.push(field);
      field = "";
    } else if (char === "\n" || char === "\r") {
      if (char === "\r" && text[i + 1] === "\n") i++;
      record.push(field);
      records.push(record);
      record = [];
      field = "";
    } else {
      field += char;
    }
  }
  if (field !== "" || record.length) {
    record.push(field);
    records.push(record);
  }
  return records;
}

/** A run whose metric rows can be downloaded: where they are served, and its name in the chart. */
interface MetricSource {
  experiment: string;
  run: string;
  route: string;
  label: string;
}

function metricSources(runs: ChartRun[]): MetricSource[] {
  return runs.flatMap((run) =>
    run.metrics ? [{ experiment: run.metrics.experiment, run: run.metrics.run, route: run.metrics.route, label: run.label }] : [],
  );
}

function metricUrl(source: MetricSource, metric: string, format: "csv" | "parquet"): string {
  return withQuery(runUrl(source.experiment, source.run, source.route), { columns: metric, format });
}

/**
 * Build one CSV of a metric over several runs: `run,step,timestamp,<metric>`,
 * from each run's CSV. Rows where the run did not log the metric are left
 * out, as the chart leaves them out; NaN and ±Inf are kept as the server
 * writes them (NaN, inf, -inf).
 */
export async function metricCsv(metric: string, sources: MetricSource[]): Promise<string> {
  const lines = [csvLine(["run", "step", "timestamp", metric])];
  for (const source of sources) {
    const response = await request(metricUrl(source, metric, "csv"));
    const [header, ...records] = parseCsv(await response.text());
    const step = header?.indexOf("step") ?? -1;
    const timestamp = header?.indexOf("timestamp") ?? -1;
    const value = header?.indexOf(metric) ?? -1;
    if (value < 0) continue; // The run never logged this metric.
    for (const record of records) {
      if (record.length === 1 && record[0] === "") continue;
      if (record[value] === "" || record[value] === undefined) continue;
      lines.push(csvLine([source.run, record[step] ?? "", record[timestamp] ?? "", record[value]]));
    }
  }
  return lines.join("\n") + "\n";
}

/** Render the download menu of a chart: its metric as one CSV, or as a Parquet file per run. */
export function ExportMenu({ metric, runs }: { metric: string; runs: ChartRun[] }) {
  const [state, setState] = useState<{ busy: boolean; error?: string }>({ busy: false });
  const menu = useRef<HTMLDetailsElement>(null);
  const sources = metricSources(runs);
  if (!sources.length) return null;
  const experiment = sources[0].experiment;

  const run = async (task: () => Promise<void>) => {
    setState({ busy: true });
    try {
      await task();
      setState({ busy: false });
      if (menu.current) menu.current.open = false;
    } catch (error) {
      setState({ busy: false, error: describeError(error) });
    }
  };
  const downloadCsv = () =>
    run(async () => {
      const text = await metricCsv(metric, sources);
      saveFile(fileName(experiment, metric) + ".csv", new Blob([text], { type: "text/csv" }));
    });
  const downloadParquet = () =>
    run(async () => {
      // NOTE: the browser may ask once whether this page may download several files.
      for (const source of sources) {
        const response = await request(metricUrl(source, metric, "parquet"));
        saveFile(fileName(source.run, metric) + ".parquet", await response.blob());
      }
    });

  return (
    <details
      class="export-menu"
      data-testid="export-menu"
      ref={menu}
      onKeyDown={(event) => {
        if (event.key === "Escape" && menu.current) menu.current.open = false;
      }}
    >
      <summary title={`Download the data of ${metric}`}>{state.busy ? "Downloading…" : "Download"}</summary>
      <div class="export-options">
        <button type="button" class="link-button" disabled={state.busy} onClick={downloadCsv}>
          CSV, all runs in one file
        </button>
        <button type="button" class="link-button" disabled={state.busy} onClick={downloadParquet}>
          {sources.length === 1 ? "Parquet" : `Parquet, one file per run (${sources.length})`}
        </button>
        {state.error && <span class="inline-error">Download failed: {state.error}</span>}
      </div>
    </details>
  );
}

function statusText(run: Run): string {
  if (run.status === "RUNNING" && run.stale) return "stale";
  return run.status ? run.status.toLowerCase() : "unknown";
}

/** Return a run's duration in seconds; a running run's is the time since its start. */
function durationSeconds(run: Run, now: number): number | null {
  if (run.duration_secs !== null && run.duration_secs !== undefined) return run.duration_secs;
  const started = parseTime(run.started_at);
  if (run.status === "RUNNING" && started !== null) return (now - started) / 1000;
  return null;
}

/** A column of the runs CSV: its header and how to read a run's value. */
interface CsvColumn {
  name: string;
  value(run: Run, now: number): unknown;
}

/**
 * Return the CSV columns in the runs table's order, column for column: status,
 * the Run column (id, then name), started, duration, tags, then each param
 * and each metric's last, min and max value as `params` and `metrics` list them.
 */
export function runsCsvColumns(params: string[], metrics: string[]): CsvColumn[] {
  const columns: CsvColumn[] = [
    { name: "status", value: (run) => statusText(run) },
    { name: "run", value: (run) => run.id },
    { name: "name", value: (run) => run.name ?? "" },
    { name: "started_at", value: (run) => run.started_at ?? "" },
    { name: "duration_secs", value: (run, now) => durationSeconds(run, now) },
    { name: "tags", value: (run) => (run.tags ?? []).join(";") },
  ];
  for (const key of params) columns.push({ name: key, value: (run) => run.params?.[key] });
  for (const name of metrics) {
    columns.push(
      { name: `${name} last`, value: (run) => run.metrics?.[name] },
      { name: `${name} min`, value: (run) => run.best?.[name]?.min },
      { name: `${name} max`, value: (run) => run.best?.[name]?.max },
    );
  }
  return columns;
}

/** Build the CSV of runs table rows, with its columns. Values are written in full, not as the table rounds them. */
export function runsCsv(runs: Run[], params: string[], metrics: string[], now: number = Date.now()): string {
  const columns = runsCsvColumns(params, metrics);
  const lines = [csvLine(columns.map((column) => column.name))];
  for (const run of runs) lines.push(csvLine(columns.map((column) => column.value(run, now))));
  return lines.join("\n") + "\n";
}

/** Render the runs table's "Download CSV" button for the rows it shows (every page of them). */
export function RunsCsvButton(props: { experiment: string; runs: Run[]; params: string[]; metrics: string[] }) {
  const { experiment, runs, params, metrics } = props;
  return (
    <button
      type="button"
      class="button"
      disabled={!runs.length}
      title="Download the runs that pass the filters, in the table's order, with the columns it shows"
      onClick={() => saveFile(fileName(experiment, "runs") + ".csv", new Blob([runsCsv(runs, params, metrics)], { type: "text/csv" }))}
    >
      Download CSV
    </button>
  );
}
