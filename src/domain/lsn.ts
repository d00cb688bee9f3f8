import { InvalidArgumentError } from "./errors.js";

/** A WAL position as PostgreSQL prints it, e.g. "0/3000148". */
export type Lsn = string;

const LSN = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/;

export function lsnToBigInt(lsn: Lsn): bigint {
  const m = LSN.exec(lsn);
  if (!m) throw new InvalidArgumentError(`"${lsn}" is not a WAL position such as 0/3000148`);
  return (BigInt(`0x${m[1]}`) << 32n) + BigInt(`0x${m[2]}`);
}

export function lsnFromBigInt(v: bigint): Lsn {
  return `${(v >> 32n).toString(16).toUpperCase()}/${(v & 0xffffffffn).toString(16).toUpperCase()}`;
}

/** Bytes from b to a (a - b); negative when a is behind b. */
export function lsnDiff(a: Lsn, b: Lsn): bigint {
  return lsnToBigInt(a) - lsnToBigInt(b);
}

export function lsnAtLeast(a: Lsn, b: Lsn): boolean {
  return lsnDiff(a, b) >= 0n;
}

export function lsnMax(...xs: Lsn[]): Lsn {
  return xs.reduce((m, x) => (lsnAtLeast(x, m) ? x : m));
}
