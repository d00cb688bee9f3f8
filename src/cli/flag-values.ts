import { InvalidArgumentError } from "../domain/errors.js";

/** A numeric flag's value, or the fallback when it is not given; anything but a non-negative number is refused, named. */
export function nonNegative(name: string, v: string | undefined, fallback: number): number {
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0)
    throw new InvalidArgumentError(`--${name} must be a non-negative number; got "${v}"`);
  return n;
}
