// One experiment: its runs table and the charts of the selected runs.

import { ApiError, apiUrl, getJson, withQuery } from "../api";
import { EditMeta, NotebookButton } from "../components/actions";
import { ErrorMessage, Message, Tabs, Tags } from "../components/common";
import { LazyCharts, preloadCharts } from "../components/LazyCharts";
import { useDebounced, useDebouncedValue, useInterval, useNow, useResource, useStoreEvents } from "../hooks";
import { experimentUrl } from "../router";
import type { Experiment, Run } from "../types";
import { RunsTable } from "./RunsTable";

/** Seconds between refreshes of the runs table while some run is training (durations, tails). */
const LIVE_REFRESH_SECONDS = 5;
/** Milliseconds the search box must rest before its query is sent. */
const SEARCH_DELAY_MS = 250;
/** Runs charted when none is selected: the newest ones. */
const DEFAULT_CHART_RUNS = 5;

function tabQuery(query: URLSearchParams): URLSearchParams {
  return new URLSearchParams(query.getAll("run").map((id) => ["run", id]));
}

export function ExperimentPage(props: { experiment: string; tab: "runs" | "charts"; query: URLSearchParams }) {
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
  const searchError = runs.error instanceof ApiError && runs.error.status === 400 ? runs.error.message : null;
  const reloadSoon = useDebounced(() => {
    runs.reload();
    info.reload();
  }, 300);
  useStoreEvents((event) => {
    if (event.experiment === experiment) reloadSoon();
  });
  const anyRunning = (runs.data ?? []).some((run) => run.status === "RUNNING" && !run.stale);
  useInterval(runs.reload, LIVE_REFRESH_SECONDS * 1000, anyRunning && tab === "runs");
  const now = useNow(1000, anyRunning);

  if (info.error && !info.data) return <ErrorMessage error={info.error} subject={`experiment “${experiment}”`} />;
  const selected = query.getAll("run");
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
        ]}
      />
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
            <LazyCharts experiment={experiment} runs={chartRuns} query={query} />
          )}
        </>
      )}
    </div>
  );
}
