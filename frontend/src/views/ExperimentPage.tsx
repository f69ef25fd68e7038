// One experiment: its runs table and the charts of the selected runs.

import { ApiError, apiUrl, getJson, withQuery } from "../api";
import { EditMeta, NotebookButton } from "../components/actions";
import { ErrorMessage, Link, Message, Tabs, Tags } from "../components/common";
import { quoteNames } from "../format";
import { LazyCharts, preloadCharts } from "../components/LazyCharts";
import { useDebounced, useDebouncedValue, useInterval, useNow, useResource, useStoreEvents } from "../hooks";
import { experimentUrl, routeUrl, updateQuery, type ExperimentTab } from "../router";
import type { Experiment, Run } from "../types";
import { CompareView } from "./CompareView";
import { ParallelView } from "./ParallelView";
import { RunsTable } from "./RunsTable";

/** Seconds between refreshes of the runs table while some run is training (durations, tails). */
const LIVE_REFRESH_SECONDS = 5;
/** Milliseconds the search box must rest before its query is sent. */
const SEARCH_DELAY_MS = 250;
/** Runs charted when none is selected: the newest ones. */
const DEFAULT_CHART_RUNS = 5;

/** Return the query the tabs keep: the selection, the search, and the parallel coordinates brushes, which filter the runs table. */
function tabQuery(query: URLSearchParams): URLSearchParams {
  const kept = new URLSearchParams(query.getAll("run").map((id) => ["run", id]));
  if (query.get("q")) kept.set("q", query.get("q")!);
  // The runs table and the charts share the grouping (group_by).
  if (query.get("group_by")) kept.set("group_by", query.get("group_by")!);
  for (const brush of query.getAll("brush")) kept.append("brush", brush);
  return kept;
}

export function ExperimentPage(props: { experiment: string; tab: ExperimentTab; query: URLSearchParams }) {
  const { experiment, tab, query } = props;
  // The charts code loads while the runs list is fetched, not after it.
  if (tab === "charts") preloadCharts();
  const info = useResource((signal) => getJson<Experiment>(apiUrl("experiments", experiment), signal), [experiment]);
  // The search box speaks the server's run query language (`?q=`), so the server filters.
  const search = useDebouncedValue((query.get("q") ?? "").trim(), SEARCH_DELAY_MS);
  const runs = useResource(
    (signal) => getJson<Run[]>(withQuery(apiUrl("experiments", experiment, "runs"), { q: search || undefined }), signal),
    [experiment, search],
  );
  // The selection is checked against every run, not only those the search keeps.
  const allRuns = useResource(
    (signal) => (search ? getJson<Run[]>(apiUrl("experiments", experiment, "runs"), signal) : Promise.resolve(undefined)),
    [experiment, search],
  );
  const searchError = runs.error instanceof ApiError && runs.error.status === 400 ? runs.error.message : null;
  const reloadSoon = useDebounced(() => {
    runs.reload();
    info.reload();
    if (search) allRuns.reload();
  }, 300);
  useStoreEvents((event) => {
    if (event.experiment === experiment) reloadSoon();
  }, reloadSoon);
  const anyRunning = (runs.data ?? []).some((run) => run.status === "RUNNING" && !run.stale);
  useInterval(runs.reload, LIVE_REFRESH_SECONDS * 1000, anyRunning && (tab === "runs" || tab === "parallel"));
  const now = useNow(1000, anyRunning);

  if (info.error && !info.data) {
    return (
      <div data-view="experiment-error">
        <ErrorMessage error={info.error} subject={`experiment “${experiment}”`} />
        <p>
          <Link href={routeUrl({ view: "overview" })}>Back to the overview</Link>
        </p>
      </div>
    );
  }
  const knownRuns = search ? allRuns.data : runs.data;
  // A link may select runs that do not exist (deleted, mistyped): they are
  // named in a notice, and the views and the notebook get only the others.
  const { selected, missing } = splitSelection(query.getAll("run"), knownRuns);
  const chartRuns = selected.length ? selected : (runs.data ?? []).slice(0, DEFAULT_CHART_RUNS).map((run) => run.id);

  return (
    <div class="experiment" data-view={`experiment-${tab}`}>
      <header class="page-header">
        <div>
          <h1>{info.data?.display_name || experiment}</h1>
          {info.data?.description && <p class="description">{info.data.description}</p>}
          <div class="meta-line">
            {info.data?.project && <span class="muted">project {info.data.project}</span>}
            <Tags tags={info.data?.tags} />
            {info.data && (
              <EditMeta
                url={apiUrl("experiments", experiment)}
                value={info.data}
                onSaved={() => info.reload()}
              />
            )}
          </div>
        </div>
        <NotebookButton experiment={experiment} runs={selected} />
      </header>
      <Tabs
        active={tab}
        tabs={[
          { id: "runs", label: `Runs${runs.data ? ` (${runs.data.length})` : ""}`, href: experimentUrl(experiment, "runs", tabQuery(query)) },
          { id: "charts", label: "Charts", href: experimentUrl(experiment, "charts", tabQuery(query)) },
          { id: "compare", label: "Compare", href: experimentUrl(experiment, "compare", tabQuery(query)) },
          { id: "parallel", label: "Parallel coordinates", href: experimentUrl(experiment, "parallel", tabQuery(query)) },
        ]}
      />
      {missing.length > 0 && (
        <Message kind="error">
          <span data-testid="missing-runs">
            {missing.length === 1 ? "Run" : "Runs"} not found in this experiment: {quoteNames(missing)}.
          </span>{" "}
          <button type="button" class="link-button" onClick={() => updateQuery({ run: selected })}>
            Remove {missing.length === 1 ? "it" : "them"} from the selection
          </button>
        </Message>
      )}
      {runs.error && !runs.data && !searchError && <ErrorMessage error={runs.error} subject="the runs" />}
      {!runs.data && !runs.error && <Message kind="loading">Loading runs…</Message>}
      {(runs.data || searchError) && tab === "runs" && (
        <RunsTable experiment={experiment} runs={runs.data ?? []} query={query} now={now} searchError={searchError} searching={search !== ""} />
      )}
      {runs.data && tab === "charts" && (
        <>
          {!selected.length && runs.data.length > 0 && (
            <p class="muted hint">
              Showing the {Math.min(DEFAULT_CHART_RUNS, runs.data.length)} newest runs. Select runs in the runs table to compare others.
            </p>
          )}
          {runs.data.length === 0 ? (
            <Message kind="empty">This experiment has no runs yet, so there is nothing to chart.</Message>
          ) : (
            <LazyCharts experiment={experiment} runs={chartRuns} query={query} runList={runs.data} />
          )}
        </>
      )}
      {runs.data && tab === "compare" && (
        // Compare shows the existing runs only, but its edits keep the missing ids, which the notice above removes.
        <CompareView experiment={experiment} runs={knownRuns ?? runs.data} selected={[...new Set(query.getAll("run"))]} query={query} />
      )}
      {runs.data && tab === "parallel" && <ParallelView experiment={experiment} runs={runs.data} selected={selected} query={query} searchError={searchError} />}
    </div>
  );
}

/**
 * Split the selected run ids into those of existing runs (each once, in
 * order) and the missing ones. While the runs are loading, none counts as either.
 */
function splitSelection(ids: string[], runs: Run[] | undefined): { selected: string[]; missing: string[] } {
  if (!runs) return { selected: [], missing: [] };
  const known = new Set(runs.map((run) => run.id));
  const unique = [...new Set(ids)];
  return { selected: unique.filter((id) => known.has(id)), missing: unique.filter((id) => !known.has(id)) };
}
