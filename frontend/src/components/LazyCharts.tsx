// Loads the charts code (uPlot, the Arrow reader) only when a view shows charts,
// so that the first view of the dashboard does not wait for it.

import { useEffect, useState } from "preact/hooks";

import type { ChartsPanelProps } from "../charts/ChartsPanel";
import type { HistogramsPanelProps } from "../charts/HistogramsPanel";
import { describeError } from "../api";
import { Message } from "./common";

type Panel<P> = (props: P) => preact.JSX.Element;

/** Start loading the charts code now, so that it is ready when the view needs it. */
export function preloadCharts(): void {
  import("../charts/ChartsPanel").catch(() => undefined);
}

/** Return a component that loads `load`'s panel on first use and renders it with its props. */
function lazyPanel<P extends object>(load: () => Promise<Panel<P>>, what: string): (props: P) => preact.JSX.Element {
  let loaded: Panel<P> | null = null;
  return function LazyPanel(props: P) {
    const [panel, setPanel] = useState<{ component: Panel<P> | null; error?: unknown }>({ component: loaded });
    useEffect(() => {
      if (loaded) return;
      load().then(
        (component) => {
          loaded = component;
          setPanel({ component });
        },
        (error) => setPanel({ component: null, error }),
      );
    }, []);
    if (panel.error) return <Message kind="error">Cannot load the {what} code: {describeError(panel.error)}. Reload the page to try again.</Message>;
    if (!panel.component) return <Message kind="loading">Loading {what}…</Message>;
    const Component = panel.component;
    return <Component {...props} />;
  };
}

export const LazyCharts = lazyPanel<ChartsPanelProps>(() => import("../charts/ChartsPanel").then((module) => module.ChartsPanel), "charts");

export const LazyHistograms = lazyPanel<HistogramsPanelProps>(
  () => import("../charts/HistogramsPanel").then((module) => module.HistogramsPanel),
  "histograms",
);
