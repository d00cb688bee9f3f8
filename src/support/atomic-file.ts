import { chownSync, closeSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from "node:fs";
import { basename, dirname } from "node:path";

/**
 * Replaces a file so that a crash or a full disk at any moment leaves either
 * the old content or the new, never a truncated file: written to a temporary
 * file beside it, flushed, renamed over it, and the directory flushed.
 */
export function writeFileAtomic(
  path: string,
  content: string,
  opts: { mode?: number; uid?: number; gid?: number } = {},
): void {
  const tmp = `${path}.pgshift-tmp-${process.pid}`;
  const fd = openSync(tmp, "w", opts.mode ?? 0o600);
  try {
    writeSync(fd, content);
    fsyncSync(fd);
  } catch (e) {
    closeSync(fd);
    rmSync(tmp, { force: true });
    throw e;
  }
  closeSync(fd);
  if (opts.uid !== undefined && opts.gid !== undefined) chownSync(tmp, opts.uid, opts.gid);
  // Fault injection for the crash tests: die as a SIGKILL would, between the write and the rename of this file.
  if (process.env.PGSHIFT_FAULT_KILL_BEFORE_RENAME === basename(path)) process.kill(process.pid, "SIGKILL");
  renameSync(tmp, path);
  const dir = openSync(dirname(path), "r");
  try {
    fsyncSync(dir);
  } finally {
    closeSync(dir);
  }
}
