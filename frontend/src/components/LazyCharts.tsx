// Loads the charts code (uPlot, the Arrow reader) only when a view shows charts,
// so that the first view of the dashboard does not wait for it.

import { useEffect, useState } from "preact/hooks";

import type { ChartsPanelProps } from "../charts/ChartsPanel";
import { describeError } from "../api";
import { Message } from "./common";

type Panel = (props: ChartsPanelProps) => preact.JSX.Element;

let loaded: Panel | null = null;

/** Start loading the charts code now, so that it is ready when the view needs it. */
export function preloadCharts(): void {
  import("../charts/ChartsPanel").catch(() => undefined);
}

export function LazyCharts(props: ChartsPanelProps) {
  const [panel, setPanel] = useState<{ component: Panel | null; error?: unknown }>({ component: loaded });
  useEffect(() => {
    if (loaded) return;
    import("../charts/ChartsPanel").then(
      (module) => {
        loaded = module.ChartsPanel;
        setPanel({ component: loaded });
      },
      (error) => setPanel({ component: null, error }),
    );
  }, []);
  if (panel.error) return <Message kind="error">Cannot load the charts code: {describeError(panel.error)}. Reload the page to try again.</Message>;
  if (!panel.component) return <Message kind="loading">Loading charts…</Message>;
  const Component = panel.component;
  return <Component {...props} />;
}
