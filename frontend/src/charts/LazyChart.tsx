// A chart card that creates its chart only once it scrolls near the viewport.

import { useEffect, useRef, useState } from "preact/hooks";

import { MetricChart } from "./MetricChart";

/** Create the chart only once it scrolls near the viewport, so that pages with many metrics open fast. */
export function LazyChart(props: Parameters<typeof MetricChart>[0]) {
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
