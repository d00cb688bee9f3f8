import { spawn } from "node:child_process";
import { resolve } from "node:path";

const ROOT = resolve(import.meta.dirname, "../..");

/**
 * Runs an ES module script (TypeScript through tsx) in a child process with a fault-injection variable set, and
 * resolves with the signal it ended by: SIGKILL when the fault point was reached.
 */
export function runUntilKilled(script: string, env: Record<string, string>): Promise<NodeJS.Signals | null> {
  const child = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: "ignore",
  });
  return new Promise((res) => child.once("exit", (_code, signal) => res(signal)));
}

/** A module of the project, as a script's import specifier. */
export const moduleOf = (path: string) => JSON.stringify(resolve(ROOT, path));
