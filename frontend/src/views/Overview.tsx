// The overview: store totals, live runs, experiments, recent activity.

import { Fragment } from "preact";
import { useState } from "preact/hooks";

import { ApiError, apiUrl, getJson } from "../api";
import { ErrorMessage, Link, Message, RunLabel, StatusBadge, Tags } from "../components/common";
import { formatAgo, formatBytes, formatDuration, formatNumber, parseTime } from "../format";
import { useDebounced, useInterval, useNow, useResource, useStoreEvents } from "../hooks";
import type { StoreEvent } from "../live";
import { experimentUrl, runPageUrl } from "../router";
import type { Experiment, Run, Stats } from "../types";

/** Experiments whose runs are read for the live list and recent activity, most recently active first. */
const ACTIVITY_EXPERIMENTS = 8;
const ACTIVITY_ITEMS = 12;
/** Seconds between two refreshes of the overview's numbers (durations, tails). */
const REFRESH_SECONDS = 15;

interface Activity {
  at: number;
  experiment: string;
  run: string;
  text: string;
  status: Run["status"];
}

async function loadRuns(experiments: Experiment[], signal: AbortSignal): Promise<Run[]> {
  const active = experiments.filter((experiment) => experiment.active_runs > 0);
  const recent = [...experiments]
    .sort((a, b) => (parseTime(b.last_activity) ?? 0) - (parseTime(a.last_activity) ?? 0))
    .slice(0, ACTIVITY_EXPERIMENTS);
  const chosen = [...new Set([...active.slice(0, ACTIVITY_EXPERIMENTS), ...recent])];
  const lists = await Promise.all(
    chosen.map((experiment) =>
      getJson<Run[]>(apiUrl("experiments", experiment.id, "runs"), signal).catch((error) => {
        // An experiment deleted since the list was read has no runs to show; other errors fail the load.
        if (error instanceof ApiError && error.status === 404) return [] as Run[];
        throw error;
      }),
    ),
  );
  return lists.flat();
}

function activityOf(runs: Run[]): Activity[] {
  const items: Activity[] = [];
  for (const run of runs) {
    const started = parseTime(run.started_at);
    const finished = parseTime(run.finished_at);
    if (started !== null) items.push({ at: started, experiment: run.experiment, run: run.id, text: "started", status: null });
    if (finished !== null) {
      items.push({ at: finished, experiment: run.experiment, run: run.id, text: (run.status ?? "ended").toLowerCase(), status: run.status });
    }
  }
  return items.sort((a, b) => b.at - a.at).slice(0, ACTIVITY_ITEMS);
}

function describeEvent(event: StoreEvent): string {
  switch (event.type) {
    case "ExperimentCreated":
      return "experiment created";
    case "ExperimentDeleted":
      return "experiment deleted";
    case "RunCreated":
      return "run created";
    case "RunDeleted":
      return "run deleted";
    case "StatusChanged":
      return `status ${String(event.previous ?? "unknown").toLowerCase()} → ${String(event.status ?? "unknown").toLowerCase()}`;
  }
}

function Totals({ stats }: { stats: Stats }) {
  const items: [string, string, string?][] = [
    ["Experiments", formatNumber(stats.experiments)],
    ["Runs", formatNumber(stats.runs)],
    ["Active", formatNumber(stats.active), stats.active ? "active" : undefined],
    ["Stale", formatNumber(stats.stale), stats.stale ? "stale" : undefined],
    ["Storage", formatBytes(stats.storage_bytes)],
  ];
  return (
    <section class="totals" aria-label="Totals">
      {items.map(([label, value, tone]) => (
        <div class={`total ${tone ?? ""}`} key={label}>
          <div class="total-value">
            {tone === "active" && <span class="live-dot" aria-hidden="true" />}
            {value}
          </div>
          <div class="total-label">{label}</div>
        </div>
      ))}
    </section>
  );
}

function LiveRuns({ runs, now }: { runs: Run[]; now: number }) {
  const live = runs.filter((run) => run.status === "RUNNING");
  if (!live.length) return <Message kind="empty">No run is training right now.</Message>;
  return (
    <table class="grid-table">
      <thead>
        <tr>
          <th>Run</th>
          <th>Experiment</th>
          <th>Status</th>
          <th>Running for</th>
          <th>Latest values</th>
        </tr>
      </thead>
      <tbody>
        {live.map((run) => {
          const started = parseTime(run.started_at);
          return (
            <tr key={`${run.experiment}/${run.id}`}>
              <td>
                <Link href={runPageUrl(run.experiment, run.id, "charts")}>
                  <RunLabel text={run.name ?? run.id} />
                </Link>
              </td>
              <td>
                <Link href={experimentUrl(run.experiment)}>{run.experiment}</Link>
              </td>
              <td>
                <StatusBadge status={run.status} stale={run.stale} />
              </td>
              <td class="num">{started === null ? "—" : formatDuration((now - started) / 1000)}</td>
              <td class="tails">
                {Object.entries(run.metrics)
                  .sort(([a], [b]) => a.localeCompare(b))
                  .slice(0, 3)
                  .map(([name, value]) => (
                    <span key={name} class="tail">
                      <span class="tail-name">{name}</span> {formatNumber(value)}
                    </span>
                  ))}
              </td>
            </tr>
          );
        })}
      </tbody>
    </table>
  );
}

/**
 * Split experiments by their `project`, in project name order, with the
 * experiments without one last. Return an empty list when no experiment has
 * a project, because a single "no project" heading would add nothing.
 */
function byProject(experiments: Experiment[]): { project: string | null; experiments: Experiment[] }[] {
  if (!experiments.some((experiment) => experiment.project)) return [];
  const groups = new Map<string | null, Experiment[]>();
  for (const experiment of experiments) {
    const project = experiment.project || null;
    if (!groups.has(project)) groups.set(project, []);
    groups.get(project)!.push(experiment);
  }
  const projects = [...groups.keys()].sort((a, b) => {
    if (a === null || b === null) return a === null ? 1 : -1;
    return a.localeCompare(b, undefined, { numeric: true });
  });
  return projects.map((project) => ({ project, experiments: groups.get(project)! }));
}

function ExperimentRow({ experiment, now }: { experiment: Experiment; now: number }) {
  return (
    <tr data-experiment={experiment.id}>
      <td>
        <Link href={experimentUrl(experiment.id)}>{experiment.display_name || experiment.id}</Link>
        {experiment.display_name && experiment.display_name !== experiment.id && <div class="muted small">{experiment.id}</div>}
      </td>
      <td class="muted">{experiment.description ?? ""}</td>
      <td>
        <Tags tags={experiment.tags} />
      </td>
      <td class="num">{formatNumber(experiment.runs_count)}</td>
      <td class="num">
        {experiment.active_runs ? (
          <span class="active-count">
            <span class="live-dot" aria-hidden="true" />
            {experiment.active_runs}
          </span>
        ) : (
          "0"
        )}
      </td>
      <td title={experiment.last_activity ?? ""}>{formatAgo(experiment.last_activity, now)}</td>
    </tr>
  );
}

function ExperimentsTable({ experiments, now }: { experiments: Experiment[]; now: number }) {
  if (!experiments.length) {
    return (
      <Message kind="empty">
        This store has no experiments yet. A run logged with <code>expman</code> into the store folder appears here as soon as
        it starts.
      </Message>
    );
  }
  const projects = byProject(experiments);
  return (
    <table class="grid-table" data-testid="experiments">
      <thead>
        <tr>
          <th>Experiment</th>
          <th>Description</th>
          <th>Tags</th>
          <th class="num">Runs</th>
          <th class="num">Active</th>
          <th>Last activity</th>
        </tr>
      </thead>
      <tbody>
        {projects.length === 0
          ? experiments.map((experiment) => <ExperimentRow key={experiment.id} experiment={experiment} now={now} />)
          : projects.map(({ project, experiments: members }) => (
              <Fragment key={project ?? ""}>
                <tr class="project-row" data-project={project ?? ""}>
                  <th colSpan={6}>
                    {project === null ? <span class="muted">No project</span> : <>project {project}</>}
                    <span class="muted group-count">{members.length === 1 ? "1 experiment" : `${members.length} experiments`}</span>
                  </th>
                </tr>
                {members.map((experiment) => (
                  <ExperimentRow key={experiment.id} experiment={experiment} now={now} />
                ))}
              </Fragment>
            ))}
      </tbody>
    </table>
  );
}

export function Overview() {
  const stats = useResource((signal) => getJson<Stats>(apiUrl("stats"), signal), []);
  const experiments = useResource((signal) => getJson<Experiment[]>(apiUrl("experiments"), signal), []);
  const runs = useResource(
    (signal) => (experiments.data ? loadRuns(experiments.data, signal) : Promise.resolve([] as Run[])),
    [experiments.data],
  );
  const [events, setEvents] = useState<StoreEvent[]>([]);
  const now = useNow(1000);
  const reloadAll = () => {
    stats.reload();
    experiments.reload();
  };
  const reloadSoon = useDebounced(reloadAll, 500);
  useStoreEvents((event) => {
    setEvents((previous) => [event, ...previous].slice(0, ACTIVITY_ITEMS));
    reloadSoon();
  }, reloadSoon);
  useInterval(reloadAll, REFRESH_SECONDS * 1000);

  const activity = runs.data ? activityOf(runs.data) : [];
  return (
    <div class="overview" data-view="overview">
      <h1>Overview</h1>
      {stats.error && !stats.data ? <ErrorMessage error={stats.error} subject="the totals" /> : null}
      {stats.data ? <Totals stats={stats.data} /> : !stats.error && <Message kind="loading">Loading totals…</Message>}

      <div class="overview-columns">
        <div class="overview-main">
          <h2>Live runs</h2>
          {runs.data ? (
            <LiveRuns runs={runs.data} now={now} />
          ) : runs.error ? (
            <ErrorMessage error={runs.error} subject="the runs" />
          ) : (
            <Message kind="loading">Looking for live runs…</Message>
          )}

          <h2>Experiments</h2>
          {experiments.error && !experiments.data ? <ErrorMessage error={experiments.error} subject="the experiments" /> : null}
          {experiments.data ? (
            <ExperimentsTable experiments={experiments.data} now={now} />
          ) : (
            !experiments.error && <Message kind="loading">Loading experiments…</Message>
          )}
        </div>
        <aside class="overview-side">
          <h2>Recent activity</h2>
          {events.length > 0 && (
            <ul class="activity" aria-label="Changes since this page opened">
              {events.map((event, index) => (
                <li key={`live-${index}-${event.received}`}>
                  <span class="activity-time">{formatAgo(new Date(event.received).toISOString(), now)}</span>
                  <span class="activity-text">
                    {event.run ? (
                      <Link href={runPageUrl(event.experiment, event.run)}>
                        <RunLabel text={event.run} />
                      </Link>
                    ) : (
                      <Link href={experimentUrl(event.experiment)}>{event.experiment}</Link>
                    )}{" "}
                    <span class="muted">{describeEvent(event)}</span>
                  </span>
                </li>
              ))}
            </ul>
          )}
          {runs.data ? (
            activity.length ? (
              <ul class="activity">
                {activity.map((item) => (
                  <li key={`${item.experiment}/${item.run}/${item.text}`}>
                    <span class="activity-time">{formatAgo(new Date(item.at).toISOString(), now)}</span>
                    <span class="activity-text">
                      <Link href={runPageUrl(item.experiment, item.run)}>
                        <RunLabel text={item.run} />
                      </Link>{" "}
                      <span class="muted">
                        {item.status ? <StatusBadge status={item.status} /> : item.text} in {item.experiment}
                      </span>
                    </span>
                  </li>
                ))}
              </ul>
            ) : (
              <Message kind="empty">No run has started yet.</Message>
            )
          ) : (
            <Message kind="loading">Loading activity…</Message>
          )}
        </aside>
      </div>
    </div>
  );
}
