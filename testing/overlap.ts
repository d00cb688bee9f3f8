/** The most of these [start, end] intervals open at one moment (an end at the same moment as a start closes first). */
export function maxOverlap(spans: [number, number][]): number {
  const points = spans.flatMap(([a, b]): [number, number][] => [
    [a, 1],
    [b, -1],
  ]);
  points.sort((x, y) => x[0] - y[0] || x[1] - y[1]);
  let open = 0;
  let max = 0;
  for (const [, d] of points) max = Math.max(max, (open += d));
  return max;
}
