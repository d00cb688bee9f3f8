import { createHash, randomBytes } from "node:crypto";
import {
  chmodSync,
  cpSync,
  existsSync,
  mkdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";

/**
 * initdb's output, kept once per set of binaries and initdb options and copied for each new cluster: initdb costs
 * about a second of CPU, a copy a tenth. The cache is filled from a real initdb's output, taken before anything of
 * ours is written into it, and swapped in whole (a folder renamed into place), so a reader sees a complete one or
 * none. It lives in the user's cache folder (PGSHIFT_CACHE_DIR overrides), readable by this user alone: it holds
 * the superuser password the copied catalog starts with, which each copy replaces at its first start.
 */
export interface InitdbTemplate {
  dataDir: string;
  password: string;
}

function cacheRoot(): string {
  return (
    process.env.PGSHIFT_CACHE_DIR ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), ".cache"), "pgshift", "initdb")
  );
}

/**
 * What makes two initdb outputs interchangeable: the binaries (a package upgrade changes initdb's file), the options
 * and the account it runs as. Undefined when initdb cannot be looked at: then there is no cache, and initdb says why.
 */
export function templateKey(binDir: string, options: string[], runAsUid: number | undefined): string | undefined {
  try {
    const initdb = statSync(join(binDir, "initdb"));
    return createHash("sha256")
      .update(JSON.stringify({ binDir, size: initdb.size, mtime: initdb.mtimeMs, options, runAsUid }))
      .digest("hex")
      .slice(0, 24);
  } catch {
    return undefined;
  }
}

/** The cached output for the key, if there is one. */
export function findTemplate(key: string): InitdbTemplate | undefined {
  const dir = join(cacheRoot(), key);
  try {
    if (!existsSync(join(dir, "data", "PG_VERSION"))) return undefined;
    return { dataDir: join(dir, "data"), password: readFileSync(join(dir, "password"), "utf8").trim() };
  } catch {
    // An unreadable cache is no cache: initdb runs as it would without one.
    return undefined;
  }
}

/**
 * Keeps a fresh initdb output (not yet started, nothing of ours in it) for the next clusters. Best effort: a cache
 * that cannot be written (a read-only home) only means the next cluster runs initdb too.
 */
export function keepTemplate(key: string, dataDir: string, password: string): void {
  const root = cacheRoot();
  const final = join(root, key);
  const tmp = `${final}.tmp-${process.pid}-${randomBytes(4).toString("hex")}`;
  try {
    if (existsSync(final)) return;
    mkdirSync(root, { recursive: true, mode: 0o700 });
    mkdirSync(tmp, { mode: 0o700 });
    cpSync(dataDir, join(tmp, "data"), { recursive: true });
    writeFileSync(join(tmp, "password"), password + "\n", { mode: 0o600 });
    // Another process may have kept one meanwhile: either copy is as good.
    renameSync(tmp, final);
  } catch {
    // See above: the cache is an optimisation only.
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

/** Copies the template's data directory to `dataDir` (which must not exist or be empty), with PostgreSQL's 0700. */
export function copyTemplate(template: InitdbTemplate, dataDir: string): void {
  cpSync(template.dataDir, dataDir, { recursive: true });
  chmodSync(dataDir, 0o700);
}
