// The selected runs side by side: the params and run fields that differ
// between them, each metric's last and best value per run, and one metric
// plotted against another.
//
// URL: experiments/<exp>/compare?run=a&run=b…, with `show=all` to list the
// rows that are the same in every run too, and `xmetric`/`ymetric` for the
// chart's axes (no `xmetric`: the step).

import type { ComponentChildren } from "preact";
import { Fragment } from "preact";
import { useEffect, useState } from "preact/hooks";

import { describeError } from "../api";
import type { CompareChartProps } from "../charts/CompareChart";
import { colorAt } from "../colors";
import { Link, Message, RunLabel, StatusBadge, Tags } from "../components/common";
import { formatNumber, formatValue } from "../format";
import { runPageUrl, updateQuery } from "../router";
import type { Run } from "../types";
import { directionLabel, directionText, useMetricDirections, type MetricDirection } from "./directions";

/** Text of a cell that has no value, distinct from any value's text. */
const ABSENT = "\u0000absent";

interface DiffRow {
  key: string;
  label: string;
  kind: "field" | "param";
  /** Per run, the text compared between runs (ABSENT when the run has no value). */
  texts: string[];
  cells: ComponentChildren[];
}

function fieldRow(key: string, label: string, runs: Run[], value: (run: Run) => unknown, cell?: (run: Run) => ComponentChildren): DiffRow {
  const texts = runs.map((run) => {
    const item = value(run);
    return item === null || item === undefined || item === "" ? ABSENT : formatValue(item);
  });
  const cells = runs.map((run, index) => {
    if (cell) return cell(run);
    return texts[index] === ABSENT ? null : texts[index];
  });
  return { key, label, kind: "field", texts, cells };
}

/** Return the rows of the diff table: run fields, then every param any of the runs has, in name order. */
function diffRows(runs: Run[]): DiffRow[] {
  const rows = [
    fieldRow("status", "status", runs, (run) => (run.status === "RUNNING" && run.stale ? "stale" : run.status), (run) => (
      <StatusBadge status={run.status} stale={run.stale} />
    )),
    fieldRow("group", "group", runs, (run) => run.group),
    fieldRow("rank", "rank", runs, (run) => run.rank),
    fieldRow("tags", "tags", runs, (run) => (run.tags?.length ? [...run.tags].sort().join(", ") : null), (run) => <Tags tags={run.tags} />),
    fieldRow("description", "description", runs, (run) => run.description),
  ];
  const keys = new Set<string>();
  for (const run of runs) for (const key of Object.keys(run.params ?? {})) keys.add(key);
  const sorted = [...keys].sort((a, b) => a.localeCompare(b, undefined, { numeric: true }));
  for (const key of sorted) {
    const row = fieldRow(`param:${key}`, key, runs, (run) => run.params?.[key]);
    rows.push({ ...row, kind: "param" });
  }
  // A field no run has (rank outside DDP jobs) is left out even from "show all".
  return rows.filter((row) => row.kind === "param" || row.texts.some((text) => text !== ABSENT));
}

function differs(row: DiffRow): boolean {
  return new Set(row.texts).size > 1;
}

function RunHeaderCells({ runs, experiment, numeric = false }: { runs: Run[]; experiment: string; numeric?: boolean }) {
  return (
    <>
      {runs.map((run, index) => (
        <th key={run.id} data-run={run.id} class={numeric ? "compare-run num" : "compare-run"}>
          <span class="swatch" style={{ background: colorAt(index) }} />
          <Link href={runPageUrl(experiment, run.id)}>
            <RunLabel text={run.name ?? run.id} />
          </Link>
        </th>
      ))}
    </>
  );
}

function DiffTable({ runs, experiment, showAll }: { runs: Run[]; experiment: string; showAll: boolean }) {
  const rows = diffRows(runs);
  const differing = rows.filter(differs);
  const shown = showAll ? rows : differing;
  return (
    <section class="compare-section" aria-label="Params and fields">
      <div class="toolbar">
        <h2>Params and fields</h2>
        <span class="muted" data-testid="diff-count">
          {differing.length} of {rows.length} differ
        </span>
        <label class="checkbox">
          <input type="checkbox" checked={showAll} onChange={(event) => updateQuery({ show: (event.target as HTMLInputElement).checked ? "all" : null })} />
          Show the rows that are the same too
        </label>
      </div>
      {shown.length === 0 ? (
        <Message kind="empty">
          {runs.length < 2 ? "Select a second run to see what differs." : "These runs have the same params, status, group and tags."}
        </Message>
      ) : (
        <div class="table-scroll">
          <table class={showAll ? "grid-table compare-table all" : "grid-table compare-table"} data-testid="diff-table">
            <thead>
              <tr>
                <th>Name</th>
                <RunHeaderCells runs={runs} experiment={experiment} />
              </tr>
            </thead>
            <tbody>
              {shown.map((row) => (
                <tr key={row.key} data-key={row.key} class={differs(row) ? "differs" : "same"}>
                  <th class={row.kind === "field" ? "field-name" : "param-name"}>{row.label}</th>
                  {row.cells.map((cell, index) => (
                    <td key={runs[index].id} class={row.texts[index] === ABSENT ? "absent" : ""}>
                      {row.texts[index] === ABSENT ? <span class="muted">—</span> : cell}
                    </td>
                  ))}
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}

function metricNames(runs: Run[]): string[] {
  const names = new Set<string>();
  for (const run of runs) for (const name of Object.keys(run.metrics ?? {})) names.add(name);
  return [...names].sort((a, b) => a.localeCompare(b, undefined, { numeric: true }));
}

/** Return the metrics that have a number among the runs' last values or best values: those a chart can plot. */
function numericMetrics(runs: Run[]): string[] {
  return metricNames(runs).filter((name) =>
    runs.some((run) => typeof run.metrics?.[name] === "number" || typeof run.best?.[name]?.min === "number"),
  );
}

function bestOf(run: Run, name: string, direction: MetricDirection): { value: number; step: number | null } | null {
  if (direction === "none") return null;
  const entry = run.best?.[name];
  const value = entry?.[direction];
  if (typeof value !== "number") return null;
  return { value, step: direction === "min" ? entry!.min_step : entry!.max_step };
}

function MetricsTable({ runs, experiment }: { runs: Run[]; experiment: string }) {
  const directions = useMetricDirections();
  const names = metricNames(runs);
  if (!names.length) return <Message kind="empty">These runs have logged no metrics.</Message>;
  return (
    <div class="table-scroll">
      <table class="grid-table compare-table compare-metrics" data-testid="metrics-table">
        <thead>
          <tr>
            <th>Metric</th>
            <RunHeaderCells runs={runs} experiment={experiment} numeric />
          </tr>
        </thead>
        <tbody>
          {names.map((name) => {
            const direction = directions.of(name);
            const bests = runs.map((run) => bestOf(run, name, direction));
            const finite = bests.filter((best) => best !== null && Number.isFinite(best.value)).map((best) => best!.value);
            // No run is marked when every run with a value shares the best one.
            let winner: number | null = null;
            if (finite.length) winner = direction === "min" ? Math.min(...finite) : Math.max(...finite);
            const tied = finite.every((value) => value === winner);
            return (
              <tr key={name} data-metric={name}>
                <th class="metric-name-cell">
                  <span class="metric-name">{name}</span>
                  <button
                    type="button"
                    class={directions.isChosen(name) ? "direction-toggle chosen" : "direction-toggle"}
                    data-direction={direction}
                    aria-label={directionLabel(name, direction)}
                    title="Whether lower or higher values are better, or neither; click to switch"
                    onClick={() => directions.toggle(name)}
                  >
                    {directionText(direction)}
                  </button>
                </th>
                {runs.map((run, index) => {
                  const best = bests[index];
                  const isWinner = !tied && best !== null && best.value === winner;
                  if (!(name in (run.metrics ?? {})) && !best) {
                    return (
                      <td key={run.id} data-run={run.id} class="num absent">
                        <span class="muted">—</span>
                      </td>
                    );
                  }
                  return (
                    <td key={run.id} data-run={run.id} class={isWinner ? "num best-run" : "num"}>
                      <div class="metric-last" title="The last value logged">
                        <span class="muted small">last </span>
                        {formatNumber(run.metrics?.[name])}
                      </div>
                      {direction !== "none" && (
                        <div class="metric-best" title={best ? `The ${direction} of ${name}, at step ${formatNumber(best.step)}` : undefined}>
                          <span class="muted small">best </span>
                          {best ? formatNumber(best.value) : "—"}
                          {best && <span class="muted small"> · step {formatNumber(best.step)}</span>}
                        </div>
                      )}
                    </td>
                  );
                })}
              </tr>
            );
          })}
        </tbody>
      </table>
    </div>
  );
}

type ChartModule = { CompareChart: (props: CompareChartProps) => preact.JSX.Element };
let chartModule: ChartModule | null = null;

/** Render the metric-against-metric chart, loading the charts code (uPlot, Arrow) on first use. */
function LazyCompareChart(props: CompareChartProps) {
  const [loaded, setLoaded] = useState<{ module: ChartModule | null; error?: unknown }>({ module: chartModule });
  useEffect(() => {
    if (chartModule) return;
    import("../charts/CompareChart").then(
      (module) => {
        chartModule = module;
        setLoaded({ module });
      },
      (error) => setLoaded({ module: null, error }),
    );
  }, []);
  if (loaded.error) return <Message kind="error">Cannot load the charts code: {describeError(loaded.error)}. Reload the page to try again.</Message>;
  if (!loaded.module) return <Message kind="loading">Loading the chart…</Message>;
  const Chart = loaded.module.CompareChart;
  return <Chart {...props} />;
}

/** Return the metric charted when the URL names none: a loss that every run logged, else any metric they all logged. */
function defaultYMetric(runs: Run[], metrics: string[]): string {
  const shared = metrics.filter((name) => runs.every((run) => name in (run.metrics ?? {})));
  const candidates = shared.length ? shared : metrics;
  return candidates.find((name) => name.toLowerCase().includes("loss")) ?? candidates[0];
}

function MetricSelect(props: { label: string; value: string; options: string[]; withStep?: boolean; onChange(value: string): void }) {
  return (
    <label class="select-label">
      {props.label}
      <select aria-label={props.label} value={props.value} onChange={(event) => props.onChange((event.target as HTMLSelectElement).value)}>
        {props.withStep && <option value="">step</option>}
        {props.options.map((name) => (
          <option key={name} value={name}>
            {name}
          </option>
        ))}
      </select>
    </label>
  );
}

function MetricAgainstMetric({ runs, experiment, query }: { runs: Run[]; experiment: string; query: URLSearchParams }) {
  const metrics = numericMetrics(runs);
  if (!metrics.length) return null;
  const requestedX = query.get("xmetric");
  const xMetric = requestedX && metrics.includes(requestedX) ? requestedX : null;
  const requestedY = query.get("ymetric");
  const yMetric = requestedY && metrics.includes(requestedY) ? requestedY : defaultYMetric(runs, metrics);
  const chartRuns = runs.map((run, index) => ({ id: run.id, label: run.name ?? run.id, color: colorAt(index) }));
  return (
    <section class="compare-section" aria-label="Metric against metric">
      <div class="toolbar">
        <h2>Metric against metric</h2>
        <MetricSelect label="x axis" value={xMetric ?? ""} options={metrics} withStep onChange={(value) => updateQuery({ xmetric: value || null })} />
        <MetricSelect label="y axis" value={yMetric} options={metrics} onChange={(value) => updateQuery({ ymetric: value })} />
        <span class="muted small">
          Each y value is paired with the x metric's value at the same step, or its last value before that step.
        </span>
      </div>
      <LazyCompareChart experiment={experiment} runs={chartRuns} xMetric={xMetric} yMetric={yMetric} />
    </section>
  );
}

function SelectionBar({ runs, all, selected }: { runs: Run[]; all: Run[]; selected: string[] }) {
  const others = all.filter((run) => !selected.includes(run.id));
  return (
    <div class="toolbar compare-selection" aria-label="Compared runs">
      {runs.map((run, index) => (
        <span class="run-chip" key={run.id} data-run={run.id}>
          <span class="swatch" style={{ background: colorAt(index) }} />
          <RunLabel text={run.name ?? run.id} />
          <button
            type="button"
            class="link-button"
            aria-label={`Remove ${run.id} from the comparison`}
            title="Remove from the comparison"
            onClick={() => updateQuery({ run: selected.filter((id) => id !== run.id) })}
          >
            ✕
          </button>
        </span>
      ))}
      {others.length > 0 && (
        <select
          aria-label="Add a run to the comparison"
          value=""
          onChange={(event) => {
            const id = (event.target as HTMLSelectElement).value;
            if (id) updateQuery({ run: [...selected, id] });
          }}
        >
          <option value="">Add a run…</option>
          {others.map((run) => (
            <option key={run.id} value={run.id}>
              {run.name ?? run.id}
            </option>
          ))}
        </select>
      )}
    </div>
  );
}

export function CompareView(props: { experiment: string; runs: Run[]; selected: string[]; query: URLSearchParams }) {
  const { experiment, runs, selected, query } = props;
  const byId = new Map(runs.map((run) => [run.id, run]));
  const compared = selected.map((id) => byId.get(id)).filter((run): run is Run => run !== undefined);

  if (!selected.length) return <Message kind="empty">Select runs in the runs table to compare them.</Message>;
  return (
    <div class="compare" data-testid="compare">
      <SelectionBar runs={compared} all={runs} selected={selected} />
      {compared.length > 0 && (
        <Fragment>
          <DiffTable runs={compared} experiment={experiment} showAll={query.get("show") === "all"} />
          <section class="compare-section" aria-label="Metrics">
            <h2>Metrics</h2>
            <MetricsTable runs={compared} experiment={experiment} />
          </section>
          <MetricAgainstMetric runs={compared} experiment={experiment} query={query} />
        </Fragment>
      )}
    </div>
  );
}
