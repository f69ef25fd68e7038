// Whether a metric is better low (a loss), high (an accuracy) or neither (a
// counter, a schedule, a time): guessed from its name, and overridden per
// metric by the user, kept in localStorage.

import { useState } from "preact/hooks";

/** The extreme of a metric that is its best value. */
export type Direction = "min" | "max";

/** A metric's direction, or "none" for a metric with no best value (epoch, lr, time). */
export type MetricDirection = Direction | "none";

/** The order in which the header button cycles through the directions. */
const CYCLE: MetricDirection[] = ["min", "max", "none"];

const STORAGE_KEY = "expman.metricDirections";

/** Name parts of metrics that are best at their minimum. */
const MIN_WORDS = new Set([
  "loss", "losses", "error", "errors", "err", "perplexity", "ppl", "mse", "mae", "rmse", "mape", "nll", "cer", "wer",
  "ter", "fid", "regret", "cost", "distance", "dist", "latency", "kl", "divergence", "bpd", "bpc", "entropy",
]);

/** Name parts of metrics that are best at their maximum. */
const MAX_WORDS = new Set([
  "acc", "accuracy", "f1", "precision", "prec", "recall", "auc", "auroc", "roc", "score", "reward", "rewards", "return",
  "returns", "map", "iou", "miou", "bleu", "rouge", "meteor", "r2", "top1", "top5", "ap", "dice", "psnr", "ssim",
  "ndcg", "mrr", "hit", "hits", "success", "win", "throughput",
]);

/**
 * Name parts of metrics that count progress, set the schedule or measure time,
 * so that neither their lowest nor their highest value is better.
 */
const NEUTRAL_WORDS = new Set([
  "epoch", "epochs", "step", "steps", "iteration", "iterations", "iter", "iters", "it", "batch", "batches", "sample",
  "samples", "examples", "tokens", "lr", "momentum", "temperature", "time", "times", "timestamp",
  "elapsed", "duration", "seconds", "secs", "sec", "wall", "clock", "walltime",
]);

/**
 * Guess a metric's direction from its name. The last part of the name (split
 * at non-alphanumerics) that is a known word decides, so `val/loss` and
 * `eval_accuracy` are recognized. Failing that, a name with a word of a
 * counter, a schedule or a time (`epoch`, `iteration`, `lr`, `learning_rate`,
 * `time_secs`) has no best value ("none"). Failing that, substrings such as
 * `loss`, `err` and `acc` decide (`trainloss`). A name with none of these is
 * taken as a loss ("min").
 */
export function guessDirection(name: string): MetricDirection {
  const parts = name.toLowerCase().split(/[^a-z0-9]+/).filter(Boolean);
  for (let i = parts.length - 1; i >= 0; i--) {
    if (MIN_WORDS.has(parts[i])) return "min";
    if (MAX_WORDS.has(parts[i])) return "max";
  }
  // Checked after the words above, so that `loss_per_batch` stays a loss.
  if (parts.some((part) => NEUTRAL_WORDS.has(part)) || /learning[^a-z0-9]*rate/.test(name.toLowerCase())) return "none";
  const lower = name.toLowerCase();
  if (lower.includes("loss") || lower.includes("err")) return "min";
  if (lower.includes("acc") || lower.includes("score") || lower.includes("reward")) return "max";
  return "min";
}

function readOverrides(): Record<string, MetricDirection> {
  try {
    const parsed = JSON.parse(localStorage.getItem(STORAGE_KEY) ?? "{}");
    const overrides: Record<string, MetricDirection> = {};
    if (parsed && typeof parsed === "object") {
      for (const [name, value] of Object.entries(parsed)) if (CYCLE.includes(value as MetricDirection)) overrides[name] = value as MetricDirection;
    }
    return overrides;
  } catch {
    // Storage disabled, or a value this page did not write: use the guesses.
    return {};
  }
}

function writeOverrides(overrides: Record<string, MetricDirection>): void {
  try {
    localStorage.setItem(STORAGE_KEY, JSON.stringify(overrides));
  } catch {
    // Storage disabled or full: the choice lasts until the page closes.
  }
}

export interface MetricDirections {
  /** Return the direction of a metric: the user's choice, else the guess from its name. */
  of(name: string): MetricDirection;
  /** Whether the user chose the direction of a metric (rather than the guess). */
  isChosen(name: string): boolean;
  /** Switch a metric's direction to the next of min, max and none. Switching back to the guess removes the stored choice. */
  toggle(name: string): void;
}

/** Return the metric directions, re-rendering the caller when the user switches one. */
export function useMetricDirections(): MetricDirections {
  const [overrides, setOverrides] = useState(readOverrides);
  return {
    of: (name) => overrides[name] ?? guessDirection(name),
    isChosen: (name) => name in overrides,
    toggle: (name) => {
      const next = { ...readOverrides(), ...overrides };
      const current = next[name] ?? guessDirection(name);
      const flipped = CYCLE[(CYCLE.indexOf(current) + 1) % CYCLE.length];
      if (flipped === guessDirection(name)) delete next[name];
      else next[name] = flipped;
      writeOverrides(next);
      setOverrides(next);
    },
  };
}

/** Return the text of a metric's direction button: "best: min ↓", "best: max ↑" or "best: none". */
export function directionText(direction: MetricDirection): string {
  if (direction === "min") return "best: min ↓";
  if (direction === "max") return "best: max ↑";
  return "best: none";
}

/** Return the accessible name of a metric's direction button. */
export function directionLabel(name: string, direction: MetricDirection): string {
  if (direction === "none") return `${name} has no best value. Switch`;
  return `Best value of ${name}: ${direction === "min" ? "lowest" : "highest"}. Switch`;
}
