// Entry point: the page shell (header, connection banner) and the view of the current URL.

// uPlot's styles load with the page: esbuild does not load CSS that a lazily loaded chunk imports.
import "uplot/dist/uPlot.min.css";
import "./styles.css";

import { render } from "preact";
import { useEffect, useState } from "preact/hooks";

import { apiUrl, BASE_URL, getJson } from "./api";
import { Link, Message } from "./components/common";
import { connection } from "./connection";
import { ServerContext, useConnectionDown, useConnectionGeneration, useNow } from "./hooks";
import { KeyboardShortcuts } from "./keyboard";
import { routeUrl, useLocation, type Route } from "./router";
import type { ServerInfo } from "./types";
import { ExperimentPage } from "./views/ExperimentPage";
import { Overview } from "./views/Overview";
import { RunPage } from "./views/RunPage";

connection.configure(apiUrl("server"));

function ConnectionBanner() {
  const down = useConnectionDown();
  const now = useNow(1000, down);
  if (!down) return null;
  const seconds = Math.max(0, Math.ceil((connection.nextRetryAt - now) / 1000));
  return (
    <div class="banner banner-error" role="alert">
      The server at {new URL(BASE_URL, location.href).href} does not answer. Retrying in {seconds} s; live views
      resume by themselves once it is back.{" "}
      <button type="button" class="link-button" onClick={() => connection.retryNow()}>
        Retry now
      </button>
    </div>
  );
}

function Breadcrumbs({ route }: { route: Route }) {
  const crumbs: { label: string; href?: string }[] = [];
  if (route.view === "experiment" || route.view === "run") {
    crumbs.push({ label: route.experiment, href: routeUrl({ view: "experiment", experiment: route.experiment, tab: "runs" }) });
  }
  if (route.view === "run") crumbs.push({ label: route.run });
  return (
    <nav class="breadcrumbs" aria-label="Breadcrumbs">
      <Link href={routeUrl({ view: "overview" })} class="brand">
        <svg viewBox="0 0 16 16" width="18" height="18" aria-hidden="true">
          <path d="M1 14 L5 7 L9 10 L15 2" stroke="currentColor" stroke-width="2.2" fill="none" />
        </svg>
        expman
      </Link>
      {crumbs.map((crumb) => (
        <span class="crumb" key={crumb.label}>
          <span class="crumb-separator" aria-hidden="true">/</span>
          {crumb.href ? <Link href={crumb.href}>{crumb.label}</Link> : <span>{crumb.label}</span>}
        </span>
      ))}
    </nav>
  );
}

function useServerInfo(): ServerInfo | undefined {
  const [server, setServer] = useState<ServerInfo>();
  const generation = useConnectionGeneration();
  useEffect(() => {
    getJson<ServerInfo>(apiUrl("server")).then(setServer, () => undefined);
  }, [generation]);
  return server;
}

function View({ route, query }: { route: Route; query: URLSearchParams }) {
  switch (route.view) {
    case "overview":
      return <Overview />;
    case "experiment":
      return <ExperimentPage key={route.experiment} experiment={route.experiment} tab={route.tab} query={query} />;
    case "run":
      return <RunPage key={`${route.experiment}\0${route.run}`} experiment={route.experiment} run={route.run} tab={route.tab} query={query} />;
    case "not-found":
      return (
        <Message kind="error">
          No page of the dashboard is at {route.path}. <Link href={routeUrl({ view: "overview" })}>Go to the overview</Link>.
        </Message>
      );
  }
}

function App() {
  const location = useLocation();
  const server = useServerInfo();
  useEffect(() => {
    const route = location.route;
    const parts = route.view === "run" ? [route.run, route.experiment] : route.view === "experiment" ? [route.experiment] : [];
    document.title = [...parts, "expman"].join(" · ");
  }, [location.key]);
  return (
    <ServerContext.Provider value={server}>
      <header class="top">
        <Breadcrumbs route={location.route} />
        {server && (
          <span class="server-info" title={`watcher: ${server.watcher ?? "none"}`}>
            {server.read_only ? "read-only · " : ""}expman-tornado {server.version}
          </span>
        )}
      </header>
      <ConnectionBanner />
      <KeyboardShortcuts />
      <main>
        <View route={location.route} query={location.query} />
      </main>
    </ServerContext.Provider>
  );
}

const root = document.getElementById("app")!;
root.textContent = ""; // The "Loading the dashboard…" placeholder of index.html.
render(<App />, root);
