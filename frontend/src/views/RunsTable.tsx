// The runs table of an experiment: sortable, filterable, with chosen
// param and metric columns and a selection of runs to compare.

import { useMemo, useState } from "preact/hooks";

import { Chips, Link, Message, StatusBadge, Tags } from "../components/common";
import { formatAgo, formatDateTime, formatDuration, formatNumber, formatValue, parseTime } from "../format";
import { experimentUrl, runPageUrl, updateQuery } from "../router";
import type { Run } from "../types";

/** Rows rendered at first; more are added on request, so that 5,000 runs stay fast. */
const PAGE_ROWS = 200;
/** Metric and param columns pageRows when the URL does not choose them. */
const DEFAULT_METRIC_COLUMNS = 4;
const DEFAULT_PARAM_COLUMNS = 4;

export const STATUS_FILTERS = ["all", "running", "finished", "failed", "crashed", "stale", "unknown"] as const;

function statusKey(run: Run): string {
  if (run.status === "RUNNING" && run.stale) return "stale";
  return run.status ? run.status.toLowerCase() : "unknown";
}

function runDuration(run: Run, now: number): number | null {
  if (run.duration_secs !== null && run.duration_secs !== undefined) return run.duration_secs;
  const started = parseTime(run.started_at);
  if (run.status === "RUNNING" && started !== null) return (now - started) / 1000;
  return null;
}

export function matchesStatus(run: Run, status: string): boolean {
  return status === "all" || statusKey(run) === status;
}

function countText(shown: number, total: number, searching: boolean): string {
  if (searching) return `${shown} matching runs`;
  if (shown === total) return `${total} runs`;
  return `${shown} of ${total} runs`;
}

/** Describe the best values of a metric for a cell's tooltip. */
function bestText(run: Run, name: string): string | undefined {
  const best = run.best?.[name];
  if (!best) return undefined;
  return `min ${formatNumber(best.min)} at step ${formatNumber(best.min_step)} · max ${formatNumber(best.max)} at step ${formatNumber(best.max_step)}`;
}

/** How the search box works, shown as its tooltip; the server documents the full language. */
const SEARCH_HELP =
  "A word matches run ids and names. NAME OP VALUE compares a field, metric or param: " +
  "OP is =, :, !=, <, <=, >, >= or ~ (contains). Combine with and, or, not and parentheses, " +
  "for example: lr>=0.01 and (tag:sweep or status:FAILED)";

type SortValue = number | string | null;

function sortValue(run: Run, column: string, now: number): SortValue {
  if (column === "status") return statusKey(run);
  if (column === "name") return (run.name ?? run.id).toLowerCase();
  if (column === "started") return parseTime(run.started_at);
  if (column === "duration") return runDuration(run, now);
  let value: unknown = null;
  if (column.startsWith("param:")) value = run.params?.[column.slice(6)];
  else if (column.startsWith("metric:")) value = run.metrics?.[column.slice(7)];
  if (typeof value === "number") return value;
  if (value === undefined || value === null) return null;
  return formatValue(value).toLowerCase();
}

/** Compare for sorting; missing values go last in either direction. */
function compareValues(a: SortValue, b: SortValue, direction: number): number {
  if (a === null && b === null) return 0;
  if (a === null) return 1;
  if (b === null) return -1;
  if (typeof a === "number" && typeof b === "number") return (a - b) * direction;
  return String(a).localeCompare(String(b), undefined, { numeric: true }) * direction;
}

/** Order param keys: those whose value differs between runs first, since they distinguish the runs. */
function rankParams(runs: Run[]): string[] {
  const values = new Map<string, Set<string>>();
  for (const run of runs) {
    for (const [key, value] of Object.entries(run.params ?? {})) {
      if (!values.has(key)) values.set(key, new Set());
      values.get(key)!.add(formatValue(value));
    }
  }
  const keys = [...values.keys()].sort();
  const varying = keys.filter((key) => values.get(key)!.size > 1);
  return [...varying, ...keys.filter((key) => !varying.includes(key))];
}

function metricNames(runs: Run[]): string[] {
  const names = new Set<string>();
  for (const run of runs) for (const name of Object.keys(run.metrics ?? {})) names.add(name);
  return [...names].sort();
}

/** Read a chosen-columns list from the URL; an empty value means "none", absence means the default. */
function chosenColumns(query: URLSearchParams, key: string, fallback: string[]): string[] {
  if (!query.has(key)) return fallback;
  return query.getAll(key).filter(Boolean);
}

export interface RunsTableProps {
  experiment: string;
  /** The runs of the experiment, already filtered by the server when a search is active. */
  runs: Run[];
  query: URLSearchParams;
  now: number;
  /** Why the server rejected the search, if it did. */
  searchError: string | null;
  searching: boolean;
}

export function RunsTable(props: RunsTableProps) {
  const { experiment, runs, query, now, searchError, searching } = props;
  const [limit, setLimit] = useState(PAGE_ROWS);
  const text = query.get("q") ?? "";
  const status = query.get("status") ?? "all";
  // "column:direction"; the column may hold colons itself ("param:lr", "metric:val:acc").
  const sort = query.get("sort") ?? "started:desc";
  const sortColumn = sort.slice(0, Math.max(0, sort.lastIndexOf(":")));
  const sortDirection = sort.slice(sort.lastIndexOf(":") + 1);
  const direction = sortDirection === "asc" ? 1 : -1;
  const selected = query.getAll("run");

  const allParams = useMemo(() => rankParams(runs), [runs]);
  const allMetrics = useMemo(() => metricNames(runs), [runs]);
  const params = chosenColumns(query, "param", allParams.slice(0, DEFAULT_PARAM_COLUMNS));
  const metrics = chosenColumns(query, "metric", allMetrics.slice(0, DEFAULT_METRIC_COLUMNS));

  const visible = runs.filter((run) => matchesStatus(run, status));
  visible.sort(
    (a, b) =>
      compareValues(sortValue(a, sortColumn, now), sortValue(b, sortColumn, now), direction) ||
      a.id.localeCompare(b.id) * direction,
  );
  const pageRows = visible.slice(0, limit);

  const setSort = (column: string) => {
    let next = column === "started" ? "desc" : "asc";
    if (column === sortColumn) next = direction === 1 ? "desc" : "asc";
    updateQuery({ sort: `${column}:${next}` });
  };
  const setSelection = (ids: string[]) => updateQuery({ run: ids });
  const toggle = (id: string) => setSelection(selected.includes(id) ? selected.filter((item) => item !== id) : [...selected, id]);
  const allShownSelected = pageRows.length > 0 && pageRows.every((run) => selected.includes(run.id));

  const header = (column: string, label: string, className = "") => {
    const active = column === sortColumn;
    const ascending = direction === 1;
    let ariaSort: "ascending" | "descending" | "none" = "none";
    if (active) ariaSort = ascending ? "ascending" : "descending";
    return (
      <th class={className} aria-sort={ariaSort}>
        <button type="button" class="sort" data-sort={column} onClick={() => setSort(column)}>
          {label}
          <span class="sort-mark" aria-hidden="true">
            {active && (ascending ? "▲" : "▼")}
          </span>
        </button>
      </th>
    );
  };

  return (
    <div class="runs">
      <div class="toolbar">
        <input
          type="search"
          class="filter"
          placeholder="Search runs: name, or lr>=0.01 and tag:sweep"
          aria-label="Filter runs"
          title={SEARCH_HELP}
          value={text}
          onInput={(event) => updateQuery({ q: (event.target as HTMLInputElement).value || null })}
        />
        <label class="select-label">
          Status
          <select
            aria-label="Filter by status"
            value={status}
            onChange={(event) => {
              const value = (event.target as HTMLSelectElement).value;
              updateQuery({ status: value === "all" ? null : value });
            }}
          >
            {STATUS_FILTERS.map((value) => (
              <option key={value} value={value}>
                {value}
              </option>
            ))}
          </select>
        </label>
        <span class="muted count" data-testid="run-count">
          {countText(visible.length, runs.length, searching)}
        </span>
      </div>
      {searchError && (
        <p class="inline-error search-error" role="alert">
          Invalid search: {searchError}
        </p>
      )}
      <Chips label="Metrics" options={allMetrics} selected={metrics} onChange={(next) => updateQuery({ metric: next.length ? next : [""] })} />
      <Chips label="Params" options={allParams} selected={params} onChange={(next) => updateQuery({ param: next.length ? next : [""] })} />

      {selected.length > 0 && (
        <div class="selection-bar" role="region" aria-label="Selected runs">
          <span>
            {selected.length} selected
          </span>
          <Link class="button primary" href={experimentUrl(experiment, "charts", new URLSearchParams(selected.map((id) => ["run", id])))}>
            Compare in charts
          </Link>
          <button type="button" class="link-button" onClick={() => setSelection([])}>
            Clear selection
          </button>
        </div>
      )}

      {visible.length === 0 ? (
        <Message kind="empty">
          {runs.length === 0 && !searching
            ? "This experiment has no runs yet."
            : `No run matches${text ? ` “${text}”` : ""}${status !== "all" ? ` with status ${status}` : ""}.`}
        </Message>
      ) : (
        <div class="table-scroll">
          <table class="grid-table runs-table" data-testid="runs-table">
            <thead>
              <tr>
                <th class="select-cell">
                  <input
                    type="checkbox"
                    aria-label="Select all pageRows runs"
                    checked={allShownSelected}
                    onChange={() =>
                      setSelection(
                        allShownSelected
                          ? selected.filter((id) => !pageRows.some((run) => run.id === id))
                          : [...new Set([...selected, ...pageRows.map((run) => run.id)])],
                      )
                    }
                  />
                </th>
                {header("status", "Status")}
                {header("name", "Run")}
                {header("started", "Started")}
                {header("duration", "Duration", "num")}
                <th>Tags</th>
                {params.map((key) => header(`param:${key}`, key, "num param-column"))}
                {metrics.map((name) => header(`metric:${name}`, name, "num metric-column"))}
              </tr>
            </thead>
            <tbody>
              {pageRows.map((run) => (
                <tr key={run.id} data-run={run.id} class={selected.includes(run.id) ? "selected" : ""}>
                  <td class="select-cell">
                    <input type="checkbox" aria-label={`Select ${run.id}`} checked={selected.includes(run.id)} onChange={() => toggle(run.id)} />
                  </td>
                  <td>
                    <StatusBadge status={run.status} stale={run.stale} />
                  </td>
                  <td class="run-name">
                    <Link href={runPageUrl(experiment, run.id)}>{run.name ?? run.id}</Link>
                    {run.description && <div class="muted small clamp">{run.description}</div>}
                  </td>
                  <td class="started" title={formatDateTime(run.started_at)}>
                    {formatAgo(run.started_at, now)}
                  </td>
                  <td class="num">{formatDuration(runDuration(run, now))}</td>
                  <td>
                    <Tags tags={run.tags} />
                  </td>
                  {params.map((key) => (
                    <td class="num" key={key}>
                      {formatValue(run.params?.[key])}
                    </td>
                  ))}
                  {metrics.map((name) => {
                    const value = run.metrics?.[name];
                    const missing = value === null && name in (run.metrics ?? {});
                    return (
                      <td class="num" key={name} title={missing ? "The last value is NaN or ±Inf, which JSON sends as null" : bestText(run, name)}>
                        {missing ? <span class="special">NaN/Inf</span> : formatNumber(value)}
                      </td>
                    );
                  })}
                </tr>
              ))}
            </tbody>
          </table>
          {visible.length > pageRows.length && (
            <button type="button" class="button more" onClick={() => setLimit(limit + PAGE_ROWS)}>
              Show {Math.min(PAGE_ROWS, visible.length - pageRows.length)} more of {visible.length - pageRows.length} remaining runs
            </button>
          )}
        </div>
      )}
    </div>
  );
}
