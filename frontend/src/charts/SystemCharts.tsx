// The system metrics of one run (CPU, memory, GPU), charted apart from the
// training metrics. The logger samples them by time, and their `step` column
// counts samples rather than training steps, so their x axis is time.

import { useMemo, useState } from "preact/hooks";

import { Message } from "../components/common";
import { describeError } from "../api";
import { parseTime } from "../format";
import type { RunSession } from "../session";
import { LazyChart } from "./LazyChart";
import { xMapping, type ChartRun, type ChartSettings, type XRange } from "./MetricChart";

const COLOR = "#10b981";

export interface SystemChartsProps {
  session: RunSession;
  /** The training charts' settings; an x axis of steps becomes time since the start here. */
  settings: ChartSettings;
  /** Words of the metric filter, which every shown name contains. */
  words: string[];
  theme: string;
}

export function SystemCharts({ session, settings, words, theme }: SystemChartsProps) {
  const system = session.system;
  const [zoom, setZoom] = useState<XRange | null>(null);
  const [, setLoaded] = useState(0);
  const systemSettings = useMemo<ChartSettings>(
    () => ({ ...settings, x: settings.x === "step" ? "relative" : settings.x }),
    [settings],
  );
  const startMs = parseTime(session.details?.started_at);
  const dataVersion = system?.version ?? 0;
  const runs: ChartRun[] = useMemo(
    () => [{ key: session.run, label: session.details?.name ?? session.run, color: COLOR, metrics: system, startMs }],
    [system, dataVersion, startMs],
  );
  const syncKey = useMemo(() => `system-${Math.random().toString(36).slice(2)}`, []);

  if (session.systemError && !system) {
    return <Message kind="error">Cannot load the system metrics: {describeError(session.systemError)}</Message>;
  }
  const names = (system?.metricNames() ?? []).sort((a, b) => a.localeCompare(b, undefined, { numeric: true }));
  if (!system || names.length === 0) return null;
  const shown = names.filter((name) => words.every((word) => name.toLowerCase().includes(word)));
  if (!shown.length) return null;

  // Zooming fetches the visible samples again at full detail, like the training charts do.
  const applyZoom = (range: XRange | null) => {
    setZoom(range);
    if (!range) {
      system.clearZoom();
      setLoaded((value) => value + 1);
      return;
    }
    const [since, until] = system.stepRangeFor(range.min, range.max, xMapping(systemSettings.x, startMs));
    if (system.isFullIn(since, until)) return;
    system.loadZoom(since, until).then(
      () => setLoaded((value) => value + 1),
      () => undefined,
    );
  };

  return (
    <section class="chart-group system-group" data-testid="system-charts">
      <h3>System</h3>
      <p class="muted hint">
        Sampled by the logger every <code>system_metrics_interval_secs</code>; the x axis is{" "}
        {systemSettings.x === "wall" ? "wall time" : "time since the run started"}.
      </p>
      <div class="chart-grid">
        {shown.map((name) => (
          <LazyChart
            key={name}
            metric={name}
            runs={runs}
            settings={systemSettings}
            zoom={zoom}
            onZoom={applyZoom}
            dataVersion={dataVersion}
            syncKey={syncKey}
            theme={theme}
          />
        ))}
      </div>
    </section>
  );
}
