// The charts of one or more runs: a toolbar (x axis, smoothing, log scale,
// metric filter, zoom), run chips, and one chart per metric.

import { useEffect, useMemo, useRef, useState } from "preact/hooks";

import { Link, LiveBadge, Message } from "../components/common";
import { parseTime } from "../format";
import { runPageUrl, updateQuery } from "../router";
import { RunSession } from "../session";
import { MetricChart, xMapping, type ChartRun, type ChartSettings, type XMode, type XRange } from "./MetricChart";

/** Live streams the charts of an experiment open at most; further live runs are polled. */
const MAX_RUN_STREAMS = 3;

const X_MODE_NAMES: Record<XMode, string> = { step: "Step", wall: "Wall time", relative: "Relative time" };

/** Colours of runs, in selection order; readable on light and dark backgrounds. */
export const RUN_COLORS = ["#3b82f6", "#ef4444", "#10b981", "#f59e0b", "#8b5cf6", "#ec4899", "#14b8a6", "#f97316", "#6366f1", "#84cc16"];

export interface ChartsPanelProps {
  experiment: string;
  /** Run ids to chart; each gets a session of its own. */
  runs?: string[];
  /** A session owned by the caller (the run page), charted instead of `runs`. */
  session?: RunSession;
  query: URLSearchParams;
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

function useTheme(): string {
  const media = useMemo(() => window.matchMedia("(prefers-color-scheme: dark)"), []);
  const [dark, setDark] = useState(media.matches);
  useEffect(() => {
    const listener = () => setDark(media.matches);
    media.addEventListener("change", listener);
    return () => media.removeEventListener("change", listener);
  }, [media]);
  return dark ? "dark" : "light";
}

/** Keep one session per run id, started on first use and closed when the run leaves the list. */
function useSessions(experiment: string, ids: string[] | undefined): RunSession[] {
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
  for (const session of sessions.values()) if (session.liveState !== "off" && session.liveState !== "polling" && session.liveState !== "ended") count += 1;
  return count;
}

/** Re-render at most once per animation frame when any session changes. */
function useSessionsVersion(sessions: RunSession[]): number {
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

/** Create the chart only once it scrolls near the viewport, so that pages with many metrics open fast. */
function LazyChart(props: Parameters<typeof MetricChart>[0]) {
  const holder = useRef<HTMLDivElement>(null);
  const [visible, setVisible] = useState(false);
  useEffect(() => {
    const element = holder.current;
    if (!element || visible) return;
    const observer = new IntersectionObserver(
      (entries) => {
        if (entries.some((entry) => entry.isIntersecting)) {
          setVisible(true);
          observer.disconnect();
        }
      },
      { rootMargin: "300px" },
    );
    observer.observe(element);
    return () => observer.disconnect();
  }, [visible]);
  if (visible) return <MetricChart {...props} />;
  return (
    <div class="chart-card placeholder" ref={holder} data-metric={props.metric}>
      <div class="chart-title">
        <span class="chart-name">{props.metric}</span>
      </div>
    </div>
  );
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
    return settings.x === "wall" ? new Date(value * 1000).toLocaleTimeString() : String(Number(value.toPrecision(6)));
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
                  {run.label}
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
            {names.map((name) => (
              <LazyChart
                key={name}
                metric={name}
                runs={shownRuns}
                settings={settings}
                zoom={zoom}
                onZoom={applyZoom}
                dataVersion={version}
                syncKey={syncKey}
                theme={theme}
              />
            ))}
          </div>
        </section>
      ))}
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
