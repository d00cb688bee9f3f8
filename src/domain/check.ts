export type CheckStatus = "PASS" | "WARN" | "FAIL";

/** One check's verdict, with what was measured against what, and what to do about it. */
export interface CheckResult {
  name: string;
  status: CheckStatus;
  measured: string;
  threshold: string;
  message: string;
  remedy: string;
  at: string;
}

export function check(
  name: string,
  status: CheckStatus,
  fields: Partial<Omit<CheckResult, "name" | "status" | "at">> = {},
): CheckResult {
  return {
    name,
    status,
    measured: "",
    threshold: "",
    message: "",
    remedy: "",
    ...fields,
    at: new Date().toISOString(),
  };
}

export function failed(results: CheckResult[]): CheckResult[] {
  return results.filter((r) => r.status === "FAIL");
}

/** Replaces results of the same name, keeps the others: the latest verdict per check. */
export function mergeChecks(prev: CheckResult[], next: CheckResult[]): CheckResult[] {
  const names = new Set(next.map((c) => c.name));
  return [...prev.filter((c) => !names.has(c.name)), ...next];
}

/**
 * The verdicts in `next` that are news against `prev`: a check not there before, or whose status or message changed.
 * A check re-made with the same outcome (a live figure moving under a steady verdict) is not an event.
 */
export function newVerdicts(prev: CheckResult[], next: CheckResult[]): CheckResult[] {
  const before = new Map(prev.map((c) => [c.name, c]));
  return next.filter((c) => {
    const p = before.get(c.name);
    return !p || p.status !== c.status || p.message !== c.message;
  });
}

export function formatBytes(n: bigint | number): string {
  const v = Number(n);
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  let x = v;
  while (Math.abs(x) >= 1024 && i < units.length - 1) {
    x /= 1024;
    i++;
  }
  return `${i === 0 ? x : x.toFixed(1)} ${units[i]}`;
}
