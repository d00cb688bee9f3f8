import { existsSync, mkdirSync, readFileSync, renameSync, rmSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { writeFileAtomic } from "../../support/atomic-file.js";

export const OWNER_FILE = "pgshift-owner.json";

/** The migration whose mark a folder carries, if any. */
export function markedOwner(dir: string): string | undefined {
  try {
    return (JSON.parse(readFileSync(join(dir, OWNER_FILE), "utf8")) as { migrationId?: string }).migrationId;
  } catch {
    return undefined;
  }
}

/** Where a folder is prepared before it takes its name; a dot-name no cluster name can have. */
function stagingOf(dir: string, owner: string): string {
  return join(dirname(dir), `.${basename(dir)}.claim-${owner}`);
}

/**
 * Creates `dir` carrying the owner's mark, so that it never exists without
 * it: the mark is written in a staging folder that is then renamed into
 * place. A process killed at any point leaves either no folder (and at most
 * a staging folder the next claim reuses) or a marked one; an unmarked
 * folder is therefore never ours.
 */
export function claimFolder(dir: string, owner: string): void {
  const staging = stagingOf(dir, owner);
  mkdirSync(staging, { recursive: true });
  writeFileAtomic(
    join(staging, OWNER_FILE),
    JSON.stringify({ migrationId: owner, createdAt: new Date().toISOString() }) + "\n",
  );
  // Fault injection for the crash tests: die as a SIGKILL would, with the mark made but not yet in place.
  if (process.env.PGSHIFT_FAULT_KILL_BEFORE_CLAIM === basename(dir)) process.kill(process.pid, "SIGKILL");
  renameSync(staging, dir);
}

/** Removes what a claim killed before its rename left behind. */
export function dropStaging(dir: string, owner: string): void {
  const staging = stagingOf(dir, owner);
  if (existsSync(staging)) rmSync(staging, { recursive: true, force: true });
}
