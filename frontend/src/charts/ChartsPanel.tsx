// The charts of one or more runs: a toolbar (x axis, smoothing, log scale,
// metric filter, zoom), run chips, and one chart per metric.

import { useEffect, useMemo, useRef, useState } from "preact/hooks";

import { colorAt, RUN_COLORS } from "../colors";
import { Link, LiveBadge, Message, RunLabel } from "../components/common";
import { parseTime } from "../format";
import {
  GROUP_BY_KEY,
  groupByChoices,
  groupByValue,
  groupKeyOf,
  groupRuns,
  NO_VALUE_KEY,
  noValueLabel,
  parseGroupBy,
  type GroupBy,
} from "../grouping";
import { runPageUrl, updateQuery } from "../router";
import { RunSession } from "../session";
import type { Run } from "../types";
import { AggregateChart, type ChartGroup } from "./AggregateChart";
import { BAND_NAMES, type BandKind } from "./aggregate";
import { LazyChart } from "./LazyChart";
import { xMapping, type ChartRun, type ChartSettings, type XMode, type XRange } from "./MetricChart";
import { SystemCharts } from "./SystemCharts";
import { useTheme } from "./theme";

/** Live streams the charts of an experiment open at most; further live runs are polled. */
const MAX_RUN_STREAMS = 3;

const X_MODE_NAMES: Record<XMode, string> = { step: "Step", wall: "Wall time", relative: "Relative time" };

// Runs take their colours in selection order.
export { RUN_COLORS } from "../colors";

export interface ChartsPanelProps {
  experiment: string;
  /** Run ids to chart; each gets a session of its own. */
  runs?: string[];
  /** A session owned by the caller (the run page), charted instead of `runs`. */
  session?: RunSession;
  query: URLSearchParams;
  /**
   * The experiment's runs as the runs listing returns them. Their group,
   * status and params place the charted runs in groups (`group_by`); without
   * them the charts offer no grouping.
   */
  runList?: Run[];
}

/** Query keys: the metrics drawn as group means, and the band drawn around each mean. */
const AGGREGATE_KEY = "agg";
const BAND_KEY = "band";

/**
 * Place the charted runs in groups, ordered and coloured as the groups of the
 * whole experiment are in the runs table. A run missing from the list (just
 * created) counts as having no value.
 */
function chartGroups(runs: ChartRun[], runList: Run[], groupBy: GroupBy): ChartGroup[] {
  const byId = new Map(runList.map((run) => [run.id, run]));
  const known = groupRuns(runList, groupBy);
  const order = new Map(known.map((group, index) => [group.key, index]));
  const members = new Map<string, ChartRun[]>();
  for (const run of runs) {
    const info = byId.get(run.key);
    const key = info ? groupKeyOf(info, groupBy) : NO_VALUE_KEY;
    if (!members.has(key)) members.set(key, []);
    members.get(key)!.push(run);
  }
  const rank = (key: string) => order.get(key) ?? known.length;
  const keys = [...members.keys()].sort((a, b) => rank(a) - rank(b));
  return keys.map((key) => ({
    key,
    label: known[rank(key)]?.label ?? noValueLabel(groupBy),
    none: key === NO_VALUE_KEY,
    color: colorAt(rank(key)),
    runs: members.get(key)!,
  }));
}

function GroupToolbar(props: { runList: Run[]; groupBy: GroupBy | null; band: BandKind; groups: number; allAggregated: boolean; metrics: string[] }) {
  const { runList, groupBy, band, groups, allAggregated, metrics } = props;
  return (
    <div class="toolbar group-toolbar">
      <label class="select-label">
        Group by
        <select
          aria-label="Group runs by"
          value={groupBy ? groupByValue(groupBy) : ""}
          onChange={(event) => updateQuery({ [GROUP_BY_KEY]: (event.target as HTMLSelectElement).value || null })}
        >
          <option value="">none</option>
          {groupByChoices(runList, groupBy).map((choice) => (
            <option key={choice.value} value={choice.value}>
              {choice.label}
            </option>
          ))}
        </select>
      </label>
      {groupBy && (
        <>
          <label class="select-label">
            Band
            <select
              aria-label="Band around the mean"
              value={band}
              onChange={(event) => updateQuery({ [BAND_KEY]: (event.target as HTMLSelectElement).value === "std" ? "std" : null })}
            >
              {(["minmax", "std"] as BandKind[]).map((kind) => (
                <option key={kind} value={kind}>
                  {BAND_NAMES[kind]}
                </option>
              ))}
            </select>
          </label>
          <button type="button" class="button" onClick={() => updateQuery({ [AGGREGATE_KEY]: allAggregated ? null : metrics })}>
            {allAggregated ? "Show the runs in every chart" : "Group means in every chart"}
          </button>
          <span class="muted small" data-testid="group-count" title="The “group means” button of a chart draws each group's mean line and band">
            {groups === 1 ? "1 group" : `${groups} groups`} among the charted runs
          </span>
        </>
      )}
    </div>
  );
}

export function readSettings(query: URLSearchParams): ChartSettings {
  const x = query.get("x");
  const smoothing = Number(query.get("smooth") ?? "0");
  return {
    x: x === "wall" || x === "relative" ? x : "step",
    smoothing: Number.isFinite(smoothing) ? Math.min(0.99, Math.max(0, smoothing)) : 0,
    log: query.get("log") === "1",
  };
}

/** Keep one session per run id, started on first use and closed when the run leaves the list. */
export function useSessions(experiment: string, ids: string[] | undefined): RunSession[] {
  const sessions = useRef(new Map<string, RunSession>());
  const key = (ids ?? []).join("\u0001");
  const list = useMemo(() => {
    if (!ids) return [];
    const next = new Map<string, RunSession>();
    for (const id of ids) {
      let session = sessions.current.get(id);
      if (!session) {
        session = new RunSession(experiment, id, {
          logs: false,
          streamAlways: false,
          mayStream: () => streamingCount(sessions.current) < MAX_RUN_STREAMS,
        });
        void session.start();
      }
      next.set(id, session);
    }
    for (const [id, session] of sessions.current) if (!next.has(id)) session.close();
    sessions.current = next;
    return [...next.values()];
  }, [experiment, key]);
  useEffect(() => () => {
    for (const session of sessions.current.values()) session.close();
    sessions.current.clear();
  }, []);
  return list;
}

function streamingCount(sessions: Map<string, RunSession>): number {
  let count = 0;
  const following = ["connecting", "open", "reconnecting"];
  for (const session of sessions.values()) if (following.includes(session.liveState)) count += 1;
  return count;
}

/** Re-render at most once per animation frame when any session changes. */
export function useSessionsVersion(sessions: RunSession[]): number {
  const [version, setVersion] = useState(0);
  useEffect(() => {
    let frame = 0;
    const schedule = () => {
      if (frame) return;
      frame = requestAnimationFrame(() => {
        frame = 0;
        setVersion((value) => value + 1);
      });
    };
    const unsubscribers = sessions.map((session) => session.subscribe(schedule));
    schedule();
    return () => {
      cancelAnimationFrame(frame);
      for (const unsubscribe of unsubscribers) unsubscribe();
    };
  }, [sessions]);
  return version;
}

function groupOf(metric: string): string {
  const slash = metric.indexOf("/");
  return slash > 0 ? metric.slice(0, slash) : "";
}

function ZoomStatus({ sessions, zoom, settings, onReset }: { sessions: RunSession[]; zoom: XRange | null; settings: ChartSettings; onReset(): void }) {
  if (!zoom) return <span class="muted hint">Drag across a chart to zoom; double-click to reset.</span>;
  const states = sessions.map((session) => session.zoomState);
  let detail = "every row";
  if (states.includes("loading")) detail = "loading detail…";
  else if (states.includes("error")) detail = "could not load the detail of some runs";
  else if (states.includes("downsampled")) detail = `at most 2000 points per series; zoom in further for every row`;
  const unit = settings.x === "step" ? "steps" : "seconds";
  const fmt = (value: number) => {
    if (!Number.isFinite(value)) return "?";
    if (settings.x === "wall") return new Date(value * 1000).toLocaleTimeString();
    // Steps are whole numbers; seconds keep a few digits.
    return settings.x === "step" ? String(Math.round(value)) : String(Number(value.toPrecision(6)));
  };
  return (
    <span class="zoom-status" data-testid="zoom-status">
      Zoomed to {unit} {fmt(zoom.min)}–{fmt(zoom.max)} ({detail}){" "}
      <button type="button" class="button" onClick={onReset}>
        Reset zoom
      </button>
    </span>
  );
}

export function ChartsPanel(props: ChartsPanelProps) {
  const { experiment, query } = props;
  const ownSessions = useSessions(experiment, props.session ? undefined : props.runs);
  const sessions = useMemo(() => (props.session ? [props.session] : ownSessions), [props.session, ownSessions]);
  const version = useSessionsVersion(sessions);
  const theme = useTheme();
  const settingsKey = `${query.get("x")}|${query.get("smooth")}|${query.get("log")}`;
  const settings = useMemo(() => readSettings(query), [settingsKey]);
  const filter = query.get("filter") ?? "";
  const [hidden, setHidden] = useState<Set<string>>(new Set());
  const [zoom, setZoom] = useState<XRange | null>(null);
  const syncKey = useMemo(() => `charts-${Math.random().toString(36).slice(2)}`, []);

  // A zoom in one x unit means nothing in another.
  useEffect(() => {
    setZoom(null);
    for (const session of sessions) void session.zoom(null);
  }, [settings.x]);

  const chartRuns: ChartRun[] = useMemo(
    () =>
      sessions.map((session, index) => ({
        key: session.run,
        label: session.details?.name ?? session.run,
        color: RUN_COLORS[index % RUN_COLORS.length],
        metrics: session.metrics,
        startMs: parseTime(session.details?.started_at) ?? firstTime(session),
      })),
    [sessions, version],
  );
  const shownRuns = useMemo(() => chartRuns.filter((run) => !hidden.has(run.key)), [chartRuns, hidden]);

  const metricNames = useMemo(() => {
    const names = new Set<string>();
    for (const session of sessions) for (const name of session.metrics?.metricNames() ?? []) names.add(name);
    return [...names].sort((a, b) => a.localeCompare(b, undefined, { numeric: true }));
  }, [sessions, version]);
  const words = filter.toLowerCase().split(/\s+/).filter(Boolean);
  const shownMetrics = metricNames.filter((name) => words.every((word) => name.toLowerCase().includes(word)));

  const applyZoom = (range: XRange | null) => {
    setZoom(range);
    for (const session of sessions) {
      if (!range || !session.metrics) {
        void session.zoom(null);
        continue;
      }
      const toX = xMapping(settings.x, parseTime(session.details?.started_at) ?? firstTime(session));
      void session.zoom(session.metrics.stepRangeFor(range.min, range.max, toX));
    }
  };

  const loading = sessions.some((session) => !session.metrics && !session.metricsError && !session.error);
  const errors = sessions.filter((session) => session.error || session.metricsError);

  const groupBy = props.runList && !props.session ? parseGroupBy(query.get(GROUP_BY_KEY)) : null;
  const band: BandKind = query.get(BAND_KEY) === "std" ? "std" : "minmax";
  const aggregated = new Set(query.getAll(AGGREGATE_KEY));
  const runGroups = useMemo(
    () => (groupBy && props.runList ? chartGroups(shownRuns, props.runList, groupBy) : []),
    [shownRuns, props.runList, query.get(GROUP_BY_KEY)],
  );
  const toggleAggregate = (name: string) => {
    const next = aggregated.has(name) ? [...aggregated].filter((item) => item !== name) : [...aggregated, name];
    updateQuery({ [AGGREGATE_KEY]: next.length ? next : null });
  };
  const allAggregated = shownMetrics.length > 0 && shownMetrics.every((name) => aggregated.has(name));

  // What every chart of the panel shares, grouped or not.
  const chartProps = { settings, zoom, onZoom: applyZoom, dataVersion: version, syncKey, theme };

  const groups = new Map<string, string[]>();
  for (const name of shownMetrics) {
    const group = groupOf(name);
    if (!groups.has(group)) groups.set(group, []);
    groups.get(group)!.push(name);
  }

  return (
    <div class="charts" data-testid="charts">
      <div class="toolbar chart-toolbar">
        <div class="segmented" role="group" aria-label="X axis">
          {(["step", "wall", "relative"] as XMode[]).map((mode) => (
            <button
              type="button"
              key={mode}
              class={settings.x === mode ? "on" : ""}
              aria-pressed={settings.x === mode}
              data-x={mode}
              onClick={() => updateQuery({ x: mode === "step" ? null : mode })}
            >
              {X_MODE_NAMES[mode]}
            </button>
          ))}
        </div>
        <label class="slider">
          Smoothing
          <input
            type="range"
            min="0"
            max="0.99"
            step="0.01"
            value={settings.smoothing}
            aria-label="Smoothing"
            onInput={(event) => {
              const value = Number((event.target as HTMLInputElement).value);
              updateQuery({ smooth: value > 0 ? String(value) : null });
            }}
          />
          <output>{settings.smoothing.toFixed(2)}</output>
        </label>
        <label class="checkbox">
          <input type="checkbox" checked={settings.log} aria-label="Log scale" onChange={(event) => updateQuery({ log: (event.target as HTMLInputElement).checked ? "1" : null })} />
          Log scale
        </label>
        <input
          type="search"
          class="filter"
          placeholder="Filter metrics"
          aria-label="Filter metrics"
          value={filter}
          onInput={(event) => updateQuery({ filter: (event.target as HTMLInputElement).value || null })}
        />
      </div>
      {props.runList && !props.session && (
        <GroupToolbar runList={props.runList} groupBy={groupBy} band={band} groups={runGroups.length} allAggregated={allAggregated} metrics={shownMetrics} />
      )}
      <div class="toolbar">
        <ZoomStatus sessions={sessions} zoom={zoom} settings={settings} onReset={() => applyZoom(null)} />
      </div>

      {!props.session && (
        <div class="run-chips" aria-label="Charted runs">
          {chartRuns.map((run, index) => {
            const session = sessions[index];
            const off = hidden.has(run.key);
            return (
              <span class={off ? "run-chip off" : "run-chip"} key={run.key}>
                <button
                  type="button"
                  class="run-chip-toggle"
                  aria-pressed={!off}
                  title={off ? "Show this run" : "Hide this run"}
                  onClick={() => {
                    const next = new Set(hidden);
                    if (off) next.delete(run.key);
                    else next.add(run.key);
                    setHidden(next);
                  }}
                >
                  <span class="swatch" style={{ background: run.color }} />
                  <RunLabel text={run.label} />
                </button>
                <LiveBadge state={session.isLive ? session.liveState : "off"} />
                <Link class="run-chip-link" href={runPageUrl(experiment, run.key)} title="Open the run">
                  ↗
                </Link>
              </span>
            );
          })}
        </div>
      )}

      {errors.map((session) => (
        <Message kind="error" key={session.run}>
          Run {session.run}: {errorText(session)}
        </Message>
      ))}
      {loading && <Message kind="loading">Loading metrics…</Message>}
      {!loading && metricNames.length === 0 && errors.length === 0 && (
        <Message kind="empty">
          {sessions.some((session) => session.isLive)
            ? "No metrics logged yet. Charts appear as soon as the run logs its first values."
            : "These runs have logged no metrics."}
        </Message>
      )}
      {metricNames.length > 0 && shownMetrics.length === 0 && <Message kind="empty">No metric matches “{filter}”.</Message>}

      {[...groups.entries()].map(([group, names]) => (
        <section class="chart-group" key={group}>
          {groups.size > 1 && <h3>{group || "other"}</h3>}
          <div class="chart-grid">
            {names.map((name) =>
              groupBy && aggregated.has(name) ? (
                <AggregateChart
                  key={name}
                  metric={name}
                  groups={runGroups}
                  band={band}
                  {...chartProps}
                  onAggregate={() => toggleAggregate(name)}
                />
              ) : (
                <LazyChart
                  key={name}
                  metric={name}
                  runs={shownRuns}
                  {...chartProps}
                  onAggregate={groupBy ? () => toggleAggregate(name) : undefined}
                />
              ),
            )}
          </div>
        </section>
      ))}

      {props.session && <SystemCharts session={props.session} settings={settings} words={words} theme={theme} />}
    </div>
  );
}

function firstTime(session: RunSession): number | null {
  const times = session.metrics?.history.times ?? [];
  return times.find((time) => Number.isFinite(time)) ?? null;
}

function errorText(session: RunSession): string {
  const error = session.error ?? session.metricsError;
  return error instanceof Error ? error.message : String(error);
}
