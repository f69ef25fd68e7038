// Shapes of the server's JSON replies, as the REST API documents them.

export type RunStatus = "RUNNING" | "FINISHED" | "FAILED" | "CRASHED" | null;

export interface Experiment {
  id: string;
  display_name: string | null;
  description: string | null;
  tags: string[];
  project: string | null;
  runs_count: number;
  active_runs: number;
  last_activity: string | null;
}

/** A row of `GET /api/experiments/:exp/runs`. */
export interface Run {
  id: string;
  name: string | null;
  experiment: string;
  status: RunStatus;
  stale: boolean;
  started_at: string | null;
  finished_at: string | null;
  duration_secs: number | null;
  description: string | null;
  tags: string[] | null;
  params: Record<string, unknown>;
  scalars: Record<string, unknown>;
  metrics: Record<string, number | string | null>;
  /** Per metric, the smallest and largest value and their steps; absent from older servers. */
  best?: Record<string, { min: number | null; min_step: number | null; max: number | null; max_step: number | null }>;
  heartbeat_at?: string | null;
  /** The cohort the run belongs to (DDP ranks of one job, a sweep), from run.yaml. */
  group?: string | null;
  rank?: number | null;
}

export interface ColumnInfo {
  name: string;
  type: string;
}

/** `GET /api/experiments/:exp/runs/:run`. */
export interface RunDetails extends Omit<Run, "params" | "metrics"> {
  config: unknown;
  columns: ColumnInfo[];
  rows: number;
  artifacts_count: number;
  logs: string[];
  /** Files that cannot be parsed and have no good copy, by name, with the reason. */
  unreadable?: Record<string, string>;
  vectors?: Record<string, unknown>;
  language?: string | null;
  env_path?: string | null;
  group?: string | null;
  rank?: number | null;
}

export interface Stats {
  experiments: number;
  runs: number;
  active: number;
  stale: number;
  storage_bytes: number;
}

/** `GET /api/server`; `jupyter` and `editable` are optional until the server reports them. */
export interface ServerInfo {
  version: string;
  mode: string;
  watcher: string | null;
  read_only: boolean;
  live: boolean;
  subscribers: number;
  jupyter?: boolean;
  editable?: boolean;
}

export interface ArtifactEntry {
  path: string;
  name: string;
  size: number;
  ext: string;
  mime: string;
  modified: string;
  is_default: boolean;
  url: string;
}

/** A metric row as JSON sends it: NaN and ±Inf arrive as null. */
export type MetricRow = { step: number | null; timestamp: string | null } & Record<string, unknown>;

/** A histogram of `GET …/runs/:run/histograms`: `edges` has one more entry than `counts`; null is an infinite edge. */
export interface Histogram {
  step: number | null;
  edges: (number | null)[];
  counts: number[];
}

/** `GET …/runs/:run/histograms`: the histograms of each tag, in the order they were logged. */
export type HistogramsByTag = Record<string, Histogram[]>;

/** An entry of `GET …/runs/:run/media` (one line of the run's media.jsonl). */
export interface MediaEntry {
  tag: string;
  step: number | null;
  /** The path relative to the run folder. */
  file: string;
  url: string;
  mime: string;
  bytes: number;
  logged_at: string | null;
}
