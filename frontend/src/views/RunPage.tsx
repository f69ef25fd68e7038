// One run: metadata and config, charts, histograms, media, logs, artifacts; followed live.

import { useEffect, useMemo, useState } from "preact/hooks";

import { runUrl } from "../api";
import { EditMeta, NotebookButton } from "../components/actions";
import { ErrorMessage, Link, LiveBadge, Message, StatusBadge, Tabs, Tags, ValueTree } from "../components/common";
import { LazyCharts, LazyHistograms } from "../components/LazyCharts";
import { formatDateTime, formatDuration, formatNumber, formatValue, parseTime } from "../format";
import { useNow } from "../hooks";
import { experimentUrl, runPageUrl, type RunTab } from "../router";
import { RunSession } from "../session";
import type { RunDetails } from "../types";
import { ArtifactsBrowser } from "./ArtifactsBrowser";
import { LogView } from "./LogView";
import { MediaView } from "./MediaView";

function useRunSession(experiment: string, run: string): RunSession {
  const session = useMemo(
    () => new RunSession(experiment, run, { logs: true, streamAlways: true, mayStream: () => true, extras: true }),
    [experiment, run],
  );
  const [, setVersion] = useState(0);
  useEffect(() => {
    let frame = 0;
    const unsubscribe = session.subscribe(() => {
      if (frame) return;
      frame = requestAnimationFrame(() => {
        frame = 0;
        setVersion(session.version);
      });
    });
    void session.start();
    return () => {
      cancelAnimationFrame(frame);
      unsubscribe();
      session.close();
    };
  }, [session]);
  return session;
}

function Metadata({ details, now }: { details: RunDetails; now: number }) {
  const started = parseTime(details.started_at);
  const duration =
    details.duration_secs ?? (details.status === "RUNNING" && started !== null ? (now - started) / 1000 : null);
  const rows: [string, preact.ComponentChildren][] = [
    ["Status", <StatusBadge status={details.status} stale={details.stale} />],
    ["Started", formatDateTime(details.started_at)],
    ["Finished", formatDateTime(details.finished_at)],
    ["Duration", formatDuration(duration)],
    ["Last heartbeat", formatDateTime(details.heartbeat_at)],
    ["Metric rows", formatNumber(details.rows)],
    ["Artifacts", formatNumber(details.artifacts_count)],
    ["Logs", details.logs.length ? details.logs.join(", ") : "none"],
    ["Language", details.language ?? "—"],
    ["Environment", details.env_path ?? "—"],
    ["Group", details.group ?? "—"],
    ["Rank", details.rank ?? "—"],
  ];
  return (
    <dl class="metadata" data-testid="metadata">
      {rows.map(([label, value]) => (
        <div class="metadata-item" key={label}>
          <dt>{label}</dt>
          <dd>{value}</dd>
        </div>
      ))}
    </dl>
  );
}

function LastValues({ details }: { details: RunDetails }) {
  const vectors = Object.entries(details.vectors ?? {});
  const scalars = Object.entries(details.scalars ?? {});
  if (!vectors.length && !scalars.length) {
    if (details.unreadable?.["run.yaml"] !== undefined) {
      return <Message kind="empty">The last values are kept in run.yaml, which cannot be read.</Message>;
    }
    return <Message kind="empty">This run has logged no metric values yet.</Message>;
  }
  return (
    <table class="grid-table compact">
      <thead>
        <tr>
          <th>Name</th>
          <th>Kind</th>
          <th class="num">Last value</th>
        </tr>
      </thead>
      <tbody>
        {vectors.map(([name, value]) => (
          <tr key={`v-${name}`}>
            <td>{name}</td>
            <td class="muted">metric</td>
            <td class="num">{value === null ? <span class="special" title="NaN or ±Inf, sent as null">NaN/Inf</span> : formatValue(value)}</td>
          </tr>
        ))}
        {scalars.map(([name, value]) => (
          <tr key={`s-${name}`}>
            <td>{name}</td>
            <td class="muted">scalar</td>
            <td class="num">{formatValue(value)}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

function RunOverview({ session, now }: { session: RunSession; now: number }) {
  const details = session.details!;
  const columns = details.columns.filter((column) => column.name !== "step" && column.name !== "timestamp");
  const unreadable = details.unreadable ?? {};
  const metricFile = Object.keys(unreadable).find((name) => !name.endsWith(".yaml"));
  return (
    <div class="run-overview">
      {unreadable["run.yaml"] !== undefined && (
        <Message kind="error">run.yaml cannot be read: {unreadable["run.yaml"]}. Its fields are not shown.</Message>
      )}
      <section class="panel">
        <h2>Metadata</h2>
        <Metadata details={details} now={now} />
      </section>
      <section class="panel">
        <h2>Config</h2>
        {unreadable["config.yaml"] !== undefined ? (
          <Message kind="error">config.yaml cannot be read: {unreadable["config.yaml"]}</Message>
        ) : details.config && typeof details.config === "object" && Object.keys(details.config as object).length ? (
          <ValueTree value={details.config} />
        ) : (
          <Message kind="empty">This run logged no params.</Message>
        )}
      </section>
      <section class="panel">
        <h2>Last values</h2>
        <LastValues details={details} />
      </section>
      <section class="panel">
        <h2>Metric columns</h2>
        {columns.length ? (
          <ul class="columns-list">
            {columns.map((column) => (
              <li key={column.name}>
                {column.name} <span class="muted">{column.type}</span>
              </li>
            ))}
          </ul>
        ) : metricFile ? (
          <Message kind="error">
            {metricFile} cannot be read: {unreadable[metricFile]}
          </Message>
        ) : (
          <Message kind="empty">No metric columns yet.</Message>
        )}
      </section>
    </div>
  );
}

export function RunPage(props: { experiment: string; run: string; tab: RunTab; query: URLSearchParams }) {
  const { experiment, run, tab, query } = props;
  const session = useRunSession(experiment, run);
  const now = useNow(1000, session.isLive);
  const [edited, setEdited] = useState<Partial<RunDetails>>({});

  if (session.error) {
    return (
      <div data-view="run-error">
        <ErrorMessage error={session.error} subject={`run “${run}” of experiment “${experiment}”`} />
        <p>
          <Link href={experimentUrl(experiment)}>Back to the runs of {experiment}</Link>
        </p>
      </div>
    );
  }
  if (!session.details) return <Message kind="loading">Loading run {run}…</Message>;
  const details = { ...session.details, ...edited };

  const histogramTags = session.histogramTags?.length ?? 0;
  const mediaCount = session.media?.length ?? 0;
  const labels: Record<RunTab, string> = {
    overview: "Overview",
    charts: "Charts",
    histograms: `Histograms (${histogramTags})`,
    media: `Media (${mediaCount})`,
    logs: "Logs",
    artifacts: `Artifacts (${details.artifacts_count})`,
  };
  // The histograms and media tabs appear once the run has some (or when their URL was opened).
  const hasData: Partial<Record<RunTab, boolean>> = { histograms: histogramTags > 0, media: mediaCount > 0 };
  const tabs = (Object.keys(labels) as RunTab[])
    .filter((id) => hasData[id] !== false || id === tab)
    .map((id) => ({ id, label: labels[id], href: runPageUrl(experiment, run, id) }));

  return (
    <div class="run-page" data-view={`run-${tab}`}>
      {session.deleted && (
        <div class="banner banner-error" role="alert">
          This run was deleted from the store. What is shown is what was loaded before.
        </div>
      )}
      <header class="page-header">
        <div>
          <h1>
            {details.name ?? run} <StatusBadge status={session.status} stale={session.stale} />{" "}
            <LiveBadge state={session.isLive ? session.liveState : "off"} />
          </h1>
          {details.name && details.name !== run && <p class="muted small run-id">folder: {run}</p>}
          {details.description && <p class="description">{details.description}</p>}
          <div class="meta-line">
            <Tags tags={details.tags} />
            <EditMeta url={runUrl(experiment, run)} value={details} onSaved={(updated) => setEdited(updated)} />
          </div>
        </div>
        <div class="header-actions">
          <NotebookButton experiment={experiment} runs={[run]} />
          <a class="button" href={`${runUrl(experiment, run, "metrics")}?format=csv`} download>
            Metrics CSV
          </a>
          <a class="button" href={`${runUrl(experiment, run, "metrics")}?format=parquet`} download>
            Metrics Parquet
          </a>
        </div>
      </header>
      <Tabs tabs={tabs} active={tab} />
      {tab === "overview" && <RunOverview session={session} now={now} />}
      {tab === "charts" && <LazyCharts experiment={experiment} session={session} query={query} />}
      {tab === "histograms" && <LazyHistograms session={session} query={query} />}
      {tab === "media" && <MediaView session={session} query={query} />}
      {tab === "logs" && <LogView session={session} query={query} />}
      {tab === "artifacts" && <ArtifactsBrowser session={session} query={query} />}
    </div>
  );
}
