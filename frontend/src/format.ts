// Formatting of numbers, times, durations and sizes for display.

export function formatNumber(value: unknown): string {
  if (value === null || value === undefined) return "—";
  if (typeof value === "bigint") return value.toString();
  if (typeof value !== "number") return String(value);
  if (Number.isNaN(value)) return "NaN";
  if (value === Infinity) return "+Inf";
  if (value === -Infinity) return "−Inf";
  if (Number.isInteger(value) && Math.abs(value) < 1e15) return String(value);
  const magnitude = Math.abs(value);
  if (magnitude !== 0 && (magnitude >= 1e6 || magnitude < 1e-3)) return compactExponential(value);
  return String(Number(value.toPrecision(5)));
}

/**
 * Format a number as 4 significant digits without trailing zeros and a bare
 * exponent ("1e-4", "2.5e-5", "1.235e6"), so it reads like the plain numbers
 * ("0.01") that share its column.
 */
function compactExponential(value: number): string {
  const [mantissa, exponent] = value.toExponential(3).split("e");
  return `${Number(mantissa)}e${Number(exponent)}`;
}

/** Format a tick value of a chart axis: short, and exponential only for extreme values. */
export function formatTick(value: number): string {
  if (!Number.isFinite(value)) return "";
  const magnitude = Math.abs(value);
  if (magnitude !== 0 && (magnitude >= 1e6 || magnitude < 1e-4)) return value.toExponential(1);
  return String(Number(value.toPrecision(6)));
}

export function parseTime(value: string | null | undefined): number | null {
  if (!value) return null;
  const ms = Date.parse(value);
  return Number.isNaN(ms) ? null : ms;
}

function pad(value: number): string {
  return String(value).padStart(2, "0");
}

/** Format an instant in local time as "2026-01-05 09:00:00". */
export function formatDateTime(value: string | number | null | undefined): string {
  const ms = typeof value === "number" ? value : parseTime(value);
  if (ms === null) return "—";
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** Format how long ago an instant was ("12 s ago", "3 min ago", "2 days ago"). */
export function formatAgo(value: string | null | undefined, now: number = Date.now()): string {
  const ms = parseTime(value);
  if (ms === null) return "—";
  const seconds = Math.round((now - ms) / 1000);
  if (seconds < 0) return "just now";
  if (seconds < 60) return `${seconds} s ago`;
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) return `${minutes} min ago`;
  const hours = Math.round(minutes / 60);
  if (hours < 48) return `${hours} h ago`;
  return `${Math.round(hours / 24)} days ago`;
}

/** Format a duration in seconds ("850 ms", "42.1 s", "3m 05s", "2h 04m"). */
export function formatDuration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "—";
  const negative = seconds < 0;
  const s = Math.abs(seconds);
  let text: string;
  if (s < 1) text = `${Math.round(s * 1000)} ms`;
  else if (s < 60) text = `${s.toFixed(1)} s`;
  else if (s < 3600) text = `${Math.floor(s / 60)}m ${pad(Math.floor(s % 60))}s`;
  else if (s < 86400) text = `${Math.floor(s / 3600)}h ${pad(Math.floor((s % 3600) / 60))}m`;
  else text = `${Math.floor(s / 86400)}d ${pad(Math.floor((s % 86400) / 3600))}h`;
  return negative ? `−${text}` : text;
}

export function formatBytes(bytes: number | null | undefined): string {
  if (bytes === null || bytes === undefined) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

/** Quote names for a message, so that ids such as ".." or "a, b" read as names: “a”, “..”. */
export function quoteNames(names: string[]): string {
  return names.map((name) => `“${name}”`).join(", ");
}

/** Format a param value for a table cell. */
export function formatValue(value: unknown): string {
  if (value === null || value === undefined) return "—";
  if (typeof value === "number" || typeof value === "bigint") return formatNumber(value);
  if (typeof value === "string") return value;
  return JSON.stringify(value);
}
