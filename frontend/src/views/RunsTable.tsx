// The runs table of an experiment: sortable, filterable, with chosen
// param and metric columns and a selection of runs to compare. Each metric
// shows its last, min and max value, and the best run per metric is marked.

import { Fragment } from "preact";
import { useMemo, useState } from "preact/hooks";

import { BrushNotice, brushesKeep, IgnoredBrushes, readBrushes } from "../brushes";
import { Chips, Link, Message, RunLabel, StatusBadge, Tags } from "../components/common";
import { RunsCsvButton } from "../export";
import { formatAgo, formatDateTime, formatDuration, formatNumber, formatValue, parseTime } from "../format";
import { describeGroupBy, GROUP_BY_KEY, groupByChoices, groupColors, groupRuns, parseGroupBy, type GroupBy, type RunGroup } from "../grouping";
import { useRowKeys } from "../keyboard";
import { experimentUrl, navigate, runPageUrl, updateQuery } from "../router";
import type { Run } from "../types";
import { directionLabel, directionText, useMetricDirections, type Direction, type MetricDirection, type MetricDirections } from "./directions";

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
  else if (column.startsWith("min:")) value = run.best?.[column.slice(4)]?.min;
  else if (column.startsWith("max:")) value = run.best?.[column.slice(4)]?.max;
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

/** Return each metric's best value among `runs`: their lowest min or highest max, by the metric's direction. */
function bestValues(runs: Run[], metrics: string[], directions: MetricDirections): Map<string, number> {
  const best = new Map<string, number>();
  for (const name of metrics) {
    const direction = directions.of(name);
    if (direction === "none") continue;
    for (const run of runs) {
      const value = run.best?.[name]?.[direction];
      if (typeof value !== "number" || !Number.isFinite(value)) continue;
      const current = best.get(name);
      if (current === undefined || (direction === "min" ? value < current : value > current)) best.set(name, value);
    }
  }
  return best;
}

function directionTitle(name: string, direction: MetricDirection, chosen: boolean): string {
  const source = chosen ? "your choice" : "guessed from the name";
  if (direction === "none") return `Neither lower nor higher values of ${name} are better (${source}). Click to switch.`;
  const better = direction === "min" ? "Lower" : "Higher";
  return `${better} values of ${name} are better (${source}). Click to switch.`;
}

/** Render the min or max cell of a metric, marked when it is the stat that counts or the best among the runs. */
function StatCell(props: { run: Run; name: string; stat: Direction; direction: MetricDirection; best: number | undefined }) {
  const { run, name, stat, direction, best } = props;
  const entry = run.best?.[name];
  const value = entry?.[stat];
  const step = stat === "min" ? entry?.min_step : entry?.max_step;
  const classes = ["num", "metric-stat"];
  if (stat === direction) classes.push("best-stat");
  const isBest = stat === direction && typeof value === "number" && value === best;
  if (isBest) classes.push("best-run");
  let title = entry && value !== null && value !== undefined ? `${stat} ${formatNumber(value)} at step ${formatNumber(step)}` : undefined;
  if (isBest) title = `${title}; the best ${name} of the shown runs`;
  return (
    <td class={classes.join(" ")} data-metric={name} data-stat={stat} title={title}>
      {formatNumber(value)}
    </td>
  );
}

/** Query key of the groups folded in the grouped table, one value per group ("" for the runs without a value). */
const COLLAPSED_KEY = "collapsed";

/** One row of the table body: a group's header or a run. */
type BodyRow = { group: RunGroup } | { run: Run };

/**
 * Return the body rows: without grouping the runs, else each group's header
 * followed by its runs unless the group is folded. At most `limit` runs are
 * included, so that the "show more" button pages through groups too.
 */
function bodyRows(visible: Run[], groupBy: GroupBy | null, collapsed: Set<string>, limit: number): { rows: BodyRow[]; unfolded: number } {
  if (!groupBy) return { rows: visible.slice(0, limit).map((run) => ({ run })), unfolded: visible.length };
  const rows: BodyRow[] = [];
  let unfolded = 0;
  let budget = limit;
  for (const group of groupRuns(visible, groupBy)) {
    const folded = collapsed.has(group.key);
    if (!folded) unfolded += group.runs.length;
    if (budget <= 0) continue;
    rows.push({ group });
    if (folded) continue;
    for (const run of group.runs.slice(0, budget)) rows.push({ run });
    budget -= group.runs.length;
  }
  return { rows, unfolded };
}

function GroupHeader(props: {
  group: RunGroup;
  groupBy: GroupBy;
  color: string | undefined;
  columns: number;
  collapsed: boolean;
  selected: string[];
  onToggle(): void;
  onSelect(ids: string[]): void;
}) {
  const { group, groupBy, color, columns, collapsed, selected, onToggle, onSelect } = props;
  const ids = group.runs.map((run) => run.id);
  const allSelected = ids.every((id) => selected.includes(id));
  return (
    <tr class={collapsed ? "group-row collapsed" : "group-row"} data-group={group.key}>
      <td class="select-cell">
        <input
          type="checkbox"
          aria-label={`Select the runs of ${describeGroupBy(groupBy)} ${group.label}`}
          checked={allSelected}
          onChange={() => onSelect(allSelected ? selected.filter((id) => !ids.includes(id)) : [...new Set([...selected, ...ids])])}
        />
      </td>
      <td colSpan={columns - 1}>
        <button type="button" class="group-toggle" aria-expanded={!collapsed} onClick={onToggle}>
          <span class="caret" aria-hidden="true">
            {collapsed ? "▸" : "▾"}
          </span>
          {color && <span class="swatch" style={{ background: color }} />}
          <span class="muted">{describeGroupBy(groupBy)}</span> <strong class={group.none ? "group-label group-none" : "group-label"}>{group.label}</strong>
        </button>
        <span class="muted group-count">{group.runs.length === 1 ? "1 run" : `${group.runs.length} runs`}</span>
      </td>
    </tr>
  );
}

/** Read a chosen-columns list from the URL; an empty value means "none", absence means the default. */
function chosenColumns(query: URLSearchParams, key: string, fallback: string[]): string[] {
  if (!query.has(key)) return fallback;
  return query.getAll(key).filter(Boolean);
}

/** Return the query that opens the selected runs in another tab, with the grouping, which the charts use too. */
function selectionQuery(selected: string[], query: URLSearchParams): URLSearchParams {
  const next = new URLSearchParams(selected.map((id) => ["run", id]));
  const groupBy = query.get(GROUP_BY_KEY);
  if (groupBy) next.set(GROUP_BY_KEY, groupBy);
  return next;
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
  const directions = useMetricDirections();

  // Brushes drawn in the parallel coordinates view (`?brush=`) filter the table too.
  const brushSet = readBrushes(query, runs);
  const brushes = brushSet.active;
  const visible = runs.filter((run) => matchesStatus(run, status) && brushesKeep(brushes, run));
  visible.sort(
    (a, b) =>
      compareValues(sortValue(a, sortColumn, now), sortValue(b, sortColumn, now), direction) ||
      a.id.localeCompare(b.id) * direction,
  );
  const groupBy = parseGroupBy(query.get(GROUP_BY_KEY));
  const collapsed = new Set(query.getAll(COLLAPSED_KEY));
  const colors = useMemo(() => (groupBy ? groupColors(runs, groupBy) : null), [runs, query.get(GROUP_BY_KEY)]);
  const body = bodyRows(visible, groupBy, collapsed, limit);
  const pageRows = body.rows.flatMap((row) => ("run" in row ? [row.run] : []));
  const toggleGroup = (key: string) => {
    const next = collapsed.has(key) ? [...collapsed].filter((item) => item !== key) : [...collapsed, key];
    updateQuery({ [COLLAPSED_KEY]: next.length ? next : null });
  };
  const bests = bestValues(visible, metrics, directions);

  const setSort = (column: string) => {
    let next = column === "started" ? "desc" : "asc";
    if (column === sortColumn) next = direction === 1 ? "desc" : "asc";
    updateQuery({ sort: `${column}:${next}` });
  };
  const setSelection = (ids: string[]) => updateQuery({ run: ids });
  const toggle = (id: string) => setSelection(selected.includes(id) ? selected.filter((item) => item !== id) : [...selected, id]);
  const highlighted = useRowKeys(pageRows.map((run) => run.id), { open: (id) => navigate(runPageUrl(experiment, id)), toggle });
  const allShownSelected = pageRows.length > 0 && pageRows.every((run) => selected.includes(run.id));

  const header = (column: string, label: string, className = "", rowSpan = 1) => {
    const active = column === sortColumn;
    const ascending = direction === 1;
    let ariaSort: "ascending" | "descending" | "none" = "none";
    if (active) ariaSort = ascending ? "ascending" : "descending";
    return (
      <th key={column} class={className} aria-sort={ariaSort} rowSpan={rowSpan}>
        <button type="button" class="sort" data-sort={column} onClick={() => setSort(column)}>
          {label}
          <span class="sort-mark" aria-hidden="true">
            {active && (ascending ? "▲" : "▼")}
          </span>
        </button>
      </th>
    );
  };

  // With metric columns the header has two rows: each metric's name over its last, min and max.
  const rowSpan = metrics.length ? 2 : 1;
  // Select, status, name, started, duration and tags, then the chosen columns.
  const columnCount = 6 + params.length + 3 * metrics.length;

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
        <label class="select-label">
          Group by
          <select
            aria-label="Group runs by"
            value={groupBy ? query.get(GROUP_BY_KEY)! : ""}
            onChange={(event) => {
              const value = (event.target as HTMLSelectElement).value;
              updateQuery({ [GROUP_BY_KEY]: value || null, [COLLAPSED_KEY]: null });
            }}
          >
            <option value="">none</option>
            {groupByChoices(runs, groupBy).map((choice) => (
              <option key={choice.value} value={choice.value}>
                {choice.label}
              </option>
            ))}
          </select>
        </label>
        <span class="muted count" data-testid="run-count">
          {countText(visible.length, runs.length, searching)}
        </span>
        <RunsCsvButton experiment={experiment} runs={visible} params={params} metrics={metrics} />
      </div>
      {searchError && (
        <p class="inline-error search-error" role="alert">
          Invalid search: {searchError}
        </p>
      )}
      <IgnoredBrushes brushes={brushSet} />
      <BrushNotice brushes={brushes} hidden={runs.filter((run) => !brushesKeep(brushes, run)).length} />
      <Chips label="Metrics" options={allMetrics} selected={metrics} onChange={(next) => updateQuery({ metric: next.length ? next : [""] })} />
      <Chips label="Params" options={allParams} selected={params} onChange={(next) => updateQuery({ param: next.length ? next : [""] })} />

      {selected.length > 0 && (
        <div class="selection-bar" role="region" aria-label="Selected runs">
          <span>
            {selected.length} selected
          </span>
          <Link class="button primary" href={experimentUrl(experiment, "charts", selectionQuery(selected, query))}>
            Compare in charts
          </Link>
          <Link class="button" href={experimentUrl(experiment, "compare", selectionQuery(selected, query))}>
            Compare side by side
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
                <th class="select-cell" rowSpan={rowSpan}>
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
                {header("status", "Status", "", rowSpan)}
                {header("name", "Run", "", rowSpan)}
                {header("started", "Started", "", rowSpan)}
                {header("duration", "Duration", "num", rowSpan)}
                <th rowSpan={rowSpan}>Tags</th>
                {params.map((key) => header(`param:${key}`, key, "num param-column", rowSpan))}
                {metrics.map((name) => {
                  const direction = directions.of(name);
                  return (
                    <th key={name} class="metric-column" colSpan={3} data-metric={name}>
                      <span class="metric-name">{name}</span>
                      <button
                        type="button"
                        class={directions.isChosen(name) ? "direction-toggle chosen" : "direction-toggle"}
                        data-direction={direction}
                        aria-label={directionLabel(name, direction)}
                        title={directionTitle(name, direction, directions.isChosen(name))}
                        onClick={() => directions.toggle(name)}
                      >
                        {directionText(direction)}
                      </button>
                    </th>
                  );
                })}
              </tr>
              {metrics.length > 0 && (
                <tr class="metric-stats">
                  {metrics.map((name) => (
                    <Fragment key={name}>
                      {header(`metric:${name}`, "last", "num metric-stat")}
                      {header(`min:${name}`, "min", directions.of(name) === "min" ? "num metric-stat best-stat" : "num metric-stat")}
                      {header(`max:${name}`, "max", directions.of(name) === "max" ? "num metric-stat best-stat" : "num metric-stat")}
                    </Fragment>
                  ))}
                </tr>
              )}
            </thead>
            <tbody>
              {body.rows.map((row) => {
                if ("group" in row) {
                  return (
                    <GroupHeader
                      key={`group:${row.group.key}`}
                      group={row.group}
                      groupBy={groupBy!}
                      color={colors?.get(row.group.key)}
                      columns={columnCount}
                      collapsed={collapsed.has(row.group.key)}
                      selected={selected}
                      onToggle={() => toggleGroup(row.group.key)}
                      onSelect={setSelection}
                    />
                  );
                }
                const run = row.run;
                return (
                  <tr key={run.id} data-run={run.id} class={selected.includes(run.id) ? "selected" : ""} data-highlighted={run.id === highlighted || undefined}>
                    <td class="select-cell">
                      <input type="checkbox" aria-label={`Select ${run.id}`} checked={selected.includes(run.id)} onChange={() => toggle(run.id)} />
                    </td>
                    <td>
                      <StatusBadge status={run.status} stale={run.stale} />
                    </td>
                    <td class="run-name">
                      <Link href={runPageUrl(experiment, run.id)}>
                        <RunLabel text={run.name ?? run.id} />
                      </Link>
                      {run.name && run.name !== run.id && (
                        <div class="muted small run-id">
                          <RunLabel text={run.id} />
                        </div>
                      )}
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
                      const direction = directions.of(name);
                      return (
                        <Fragment key={name}>
                          <td
                            class="num metric-stat"
                            data-metric={name}
                            data-stat="last"
                            title={missing ? "The last value is NaN or ±Inf, which JSON sends as null" : bestText(run, name)}
                          >
                            {missing ? <span class="special">NaN/Inf</span> : formatNumber(value)}
                          </td>
                          <StatCell run={run} name={name} stat="min" direction={direction} best={bests.get(name)} />
                          <StatCell run={run} name={name} stat="max" direction={direction} best={bests.get(name)} />
                        </Fragment>
                      );
                    })}
                  </tr>
                );
              })}
            </tbody>
          </table>
          {body.unfolded > pageRows.length && (
            <button type="button" class="button more" onClick={() => setLimit(limit + PAGE_ROWS)}>
              Show {Math.min(PAGE_ROWS, body.unfolded - pageRows.length)} more of {body.unfolded - pageRows.length} remaining runs
            </button>
          )}
        </div>
      )}
    </div>
  );
}
