// Grouping runs by their `group` field, their status or a param: the runs
// table shows a header row per group, and the charts draw a group's mean and
// spread. Both read the choice from the URL's `group_by` key:
// `group`, `status` or `param:<key>`.

import { colorAt } from "./colors";
import { formatValue } from "./format";
import type { Run } from "./types";

/** The query key of the grouping, shared by the runs table and the charts. */
export const GROUP_BY_KEY = "group_by";

export type GroupBy = { kind: "group" } | { kind: "status" } | { kind: "param"; key: string };

/**
 * The key of the group of runs without a value. It is a sentinel, not a label:
 * a value's key is its text, never empty, so a run whose group is literally
 * "no group" gets a group of its own.
 */
export const NO_VALUE_KEY = "";

/** A group of runs that share a value; `key` is NO_VALUE_KEY for the runs without one. */
export interface RunGroup {
  key: string;
  label: string;
  /** Whether this is the group of the runs without a value; views set its label apart from values. */
  none: boolean;
  runs: Run[];
}

/** Statuses in the order their groups are listed: the live ones first. */
const STATUS_ORDER = ["running", "stale", "finished", "failed", "crashed", "unknown"];

/** Return the grouping a `group_by` value names, or null for none or an unknown value. */
export function parseGroupBy(value: string | null): GroupBy | null {
  if (value === "group" || value === "status") return { kind: value };
  if (value?.startsWith("param:") && value.length > 6) return { kind: "param", key: value.slice(6) };
  return null;
}

export function groupByValue(groupBy: GroupBy): string {
  return groupBy.kind === "param" ? `param:${groupBy.key}` : groupBy.kind;
}

export function describeGroupBy(groupBy: GroupBy): string {
  return groupBy.kind === "param" ? groupBy.key : groupBy.kind;
}

/** Return a run's status as the status filter names it (`stale` for a RUNNING run gone quiet). */
export function statusName(run: Run): string {
  if (run.status === "RUNNING" && run.stale) return "stale";
  return run.status ? run.status.toLowerCase() : "unknown";
}

/** Return the raw value a run is grouped by; undefined, null and "" mean it has none. */
function rawValue(run: Run, groupBy: GroupBy): unknown {
  if (groupBy.kind === "group") return run.group;
  if (groupBy.kind === "status") return statusName(run);
  return run.params?.[groupBy.key];
}

/** Return the key of the group a run belongs to: its value as text, or "" when it has none. */
export function groupKeyOf(run: Run, groupBy: GroupBy): string {
  const value = rawValue(run, groupBy);
  if (value === undefined || value === null || value === "") return NO_VALUE_KEY;
  return formatValue(value);
}

export function noValueLabel(groupBy: GroupBy): string {
  if (groupBy.kind === "group") return "no group";
  return `no ${describeGroupBy(groupBy)}`;
}

/**
 * Split runs into groups, keeping the runs' order within each group. Groups
 * come in value order (numbers by value, text in natural order, statuses live
 * first), and the runs without a value come last.
 */
export function groupRuns(runs: Run[], groupBy: GroupBy): RunGroup[] {
  const byKey = new Map<string, { raw: unknown; runs: Run[] }>();
  for (const run of runs) {
    const key = groupKeyOf(run, groupBy);
    let entry = byKey.get(key);
    if (!entry) {
      entry = { raw: rawValue(run, groupBy), runs: [] };
      byKey.set(key, entry);
    }
    entry.runs.push(run);
  }
  const keys = [...byKey.keys()];
  keys.sort((a, b) => {
    if (a === NO_VALUE_KEY || b === NO_VALUE_KEY) return a === NO_VALUE_KEY ? 1 : -1;
    if (groupBy.kind === "status") return STATUS_ORDER.indexOf(a) - STATUS_ORDER.indexOf(b);
    const rawA = byKey.get(a)!.raw;
    const rawB = byKey.get(b)!.raw;
    if (typeof rawA === "number" && typeof rawB === "number") return rawA - rawB;
    return a.localeCompare(b, undefined, { numeric: true });
  });
  return keys.map((key) => {
    const none = key === NO_VALUE_KEY;
    return { key, label: none ? noValueLabel(groupBy) : key, none, runs: byKey.get(key)!.runs };
  });
}

/** Return a colour per group key, by the key's place among the groups of `runs`, so that every view colours a group alike. */
export function groupColors(runs: Run[], groupBy: GroupBy): Map<string, string> {
  return new Map(groupRuns(runs, groupBy).map((group, index) => [group.key, colorAt(index)]));
}

/**
 * Return the `group_by` choices for these runs: the run group, the status,
 * then each param in name order. A `current` param that no run has (a link
 * from another experiment, a typo) is added, marked missing, so that the
 * select shows the value of the URL.
 */
export function groupByChoices(runs: Run[], current: GroupBy | null): { value: string; label: string }[] {
  const keys = new Set<string>();
  for (const run of runs) for (const key of Object.keys(run.params ?? {})) keys.add(key);
  const params = [...keys].sort((a, b) => a.localeCompare(b, undefined, { numeric: true }));
  const choices = [
    { value: "group", label: "group" },
    { value: "status", label: "status" },
    ...params.map((key) => ({ value: `param:${key}`, label: `param ${key}` })),
  ];
  if (current?.kind === "param" && !keys.has(current.key)) {
    choices.push({ value: groupByValue(current), label: `param ${current.key} (missing: no run has it)` });
  }
  return choices;
}
