// Client-side routes under the server's base URL, with the History API.
//
// The server answers every non-API path with the dashboard's page, so each
// of these URLs reloads to the same view:
//   <base>                                       overview
//   <base>experiments/<exp>                      runs table
//   <base>experiments/<exp>/charts               charts of the selected runs
//   <base>experiments/<exp>/compare              the selected runs side by side: what differs
//   <base>experiments/<exp>/parallel             parallel coordinates of params and metrics
//   <base>experiments/<exp>/runs/<run>[/<tab>]   one run (tab: charts, histograms, media, logs, artifacts)
// View settings (filters, selection, chart options) live in the query string.

import { useEffect, useState } from "preact/hooks";

import { BASE_URL } from "./api";

export type ExperimentTab = "runs" | "charts" | "compare" | "parallel";

const EXPERIMENT_TABS: ExperimentTab[] = ["runs", "charts", "compare", "parallel"];

export type RunTab = "overview" | "charts" | "histograms" | "media" | "logs" | "artifacts";

export type Route =
  | { view: "overview" }
  | { view: "experiment"; experiment: string; tab: ExperimentTab }
  | { view: "run"; experiment: string; run: string; tab: RunTab }
  | { view: "not-found"; path: string };

const RUN_TABS: RunTab[] = ["overview", "charts", "histograms", "media", "logs", "artifacts"];

function decodeSegment(segment: string): string | null {
  try {
    return decodeURIComponent(segment);
  } catch {
    return null;
  }
}

/** Return the route of a path (percent-encoded, as in `location.pathname`). */
export function parseRoute(pathname: string): Route {
  if (!pathname.startsWith(BASE_URL) && pathname + "/" !== BASE_URL) return { view: "not-found", path: pathname };
  const rest = pathname.slice(BASE_URL.length);
  const raw = rest.split("/");
  if (raw.length && raw[raw.length - 1] === "") raw.pop();
  const parts = raw.map(decodeSegment);
  if (parts.some((part) => part === null || part === "")) return { view: "not-found", path: pathname };
  const segments = parts as string[];

  if (segments.length === 0) return { view: "overview" };
  if (segments[0] !== "experiments" || segments.length < 2) return { view: "not-found", path: pathname };
  const experiment = segments[1];
  if (segments.length === 2) return { view: "experiment", experiment, tab: "runs" };
  if (segments.length === 3 && segments[2] !== "runs" && EXPERIMENT_TABS.includes(segments[2] as ExperimentTab)) {
    return { view: "experiment", experiment, tab: segments[2] as ExperimentTab };
  }
  if (segments[2] === "runs" && (segments.length === 4 || segments.length === 5)) {
    const tab = (segments[4] ?? "overview") as RunTab;
    if (RUN_TABS.includes(tab)) return { view: "run", experiment, run: segments[3], tab };
  }
  return { view: "not-found", path: pathname };
}

/** Return the URL of a route (with the base URL), plus an optional query. */
export function routeUrl(route: Route, query?: URLSearchParams | string): string {
  const e = encodeURIComponent;
  let path: string;
  switch (route.view) {
    case "overview":
      path = "";
      break;
    case "experiment":
      path = `experiments/${e(route.experiment)}` + (route.tab === "runs" ? "" : `/${route.tab}`);
      break;
    case "run":
      path = `experiments/${e(route.experiment)}/runs/${e(route.run)}` + (route.tab === "overview" ? "" : `/${route.tab}`);
      break;
    case "not-found":
      return route.path;
  }
  const text = query === undefined ? "" : query.toString();
  return BASE_URL + path + (text ? `?${text}` : "");
}

export function experimentUrl(experiment: string, tab: ExperimentTab = "runs", query?: URLSearchParams): string {
  return routeUrl({ view: "experiment", experiment, tab }, query);
}

export function runPageUrl(experiment: string, run: string, tab: RunTab = "overview", query?: URLSearchParams): string {
  return routeUrl({ view: "run", experiment, run, tab }, query);
}

type Listener = () => void;
const listeners = new Set<Listener>();

function notify(): void {
  for (const listener of listeners) listener();
}

window.addEventListener("popstate", notify);

/** Go to a URL of the dashboard without reloading the page. */
export function navigate(url: string, replace = false): void {
  if (replace) history.replaceState(null, "", url);
  else history.pushState(null, "", url);
  notify();
  if (!replace) window.scrollTo(0, 0);
}

/** Change query parameters of the current URL in place (no new history entry). */
export function updateQuery(changes: Record<string, string | string[] | null>): void {
  const params = new URLSearchParams(location.search);
  for (const [key, value] of Object.entries(changes)) {
    params.delete(key);
    if (value === null) continue;
    for (const item of Array.isArray(value) ? value : [value]) params.append(key, item);
  }
  const text = params.toString();
  navigate(location.pathname + (text ? `?${text}` : "") + location.hash, true);
}

export interface Location {
  route: Route;
  query: URLSearchParams;
  /** The path and query, to compare locations. */
  key: string;
}

function currentLocation(): Location {
  return {
    route: parseRoute(location.pathname),
    query: new URLSearchParams(location.search),
    key: location.pathname + location.search,
  };
}

/** Return the current location, re-rendering the caller when it changes. */
export function useLocation(): Location {
  const [current, setCurrent] = useState(currentLocation);
  useEffect(() => {
    const listener = () => setCurrent(currentLocation());
    listeners.add(listener);
    return () => {
      listeners.delete(listener);
    };
  }, []);
  return current;
}

/** Handle a click on a link of the dashboard: navigate in place unless a modifier asks for a new tab. */
export function followLink(event: MouseEvent, url: string): void {
  if (event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) {
    return;
  }
  event.preventDefault();
  navigate(url);
}
