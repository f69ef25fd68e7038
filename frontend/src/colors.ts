// Series colours shared by the views that draw runs or groups of runs.

/** Colours of runs (or groups), in order; readable on light and dark backgrounds. */
export const RUN_COLORS = ["#3b82f6", "#ef4444", "#10b981", "#f59e0b", "#8b5cf6", "#ec4899", "#14b8a6", "#f97316", "#6366f1", "#84cc16"];

/** Return the colour of the item at `index` of a list, repeating the palette past its end. */
export function colorAt(index: number): string {
  return RUN_COLORS[index % RUN_COLORS.length];
}
