// Exponential moving average for the smoothing slider.

/**
 * Smooth `values` with an exponential moving average of weight `weight`
 * (0 = none, 0.99 = strong), skipping nulls, which stay null. The average is
 * debiased, (1 - weight^n) for the n-th point, so that the first points are
 * not pulled towards zero.
 */
export function smoothEma(values: (number | null)[], weight: number): (number | null)[] {
  if (weight <= 0) return values;
  const result: (number | null)[] = new Array(values.length);
  let average = 0;
  let count = 0;
  for (let i = 0; i < values.length; i++) {
    const value = values[i];
    if (value === null || !Number.isFinite(value)) {
      result[i] = value;
      continue;
    }
    average = average * weight + (1 - weight) * value;
    count += 1;
    result[i] = average / (1 - Math.pow(weight, count));
  }
  return result;
}
