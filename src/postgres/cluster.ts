import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chownSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync, rmSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import pg from "pg";
import { FailedPreconditionError, InternalError, UnavailableError } from "../domain/errors.js";
import { findPgBinaries, majorOf, pgBin } from "./binaries.js";
import { assertReachable, reachableBinDir } from "./reach.js";
import { writeFileAtomic } from "../support/atomic-file.js";
import { copyTemplate, findTemplate, keepTemplate, templateKey } from "./initdb-cache.js";
import { keepOutOfServerLog } from "./unlogged-statements.js";
import { postgresRunAs, type OsUser } from "./os-user.js";
import { freePort } from "./ports.js";

/** What we keep about a cluster next to its data directory. */
export interface ClusterMeta {
  port: number;
  password: string;
  major: number;
  /** The superuser we connect as; "postgres" for clusters we create. */
  user?: string;
  /** Set for a registered cluster whose data directory lives elsewhere. */
  dataDir?: string;
  /** Server binaries of a cluster that does not run this machine's default ones. */
  binDir?: string;
  /** Its pg_hba.conf, when not in the data directory (the server's hba_file setting, as last read). */
  hbaFile?: string;
  /** Set while a cluster copied from initdb's cache still has the superuser password its catalog came with (see start). */
  templatePassword?: string;
}

export interface ClusterOptions {
  /** Folder that holds the cluster: data/, its log and our metadata. */
  dir: string;
  /** Preferred port; a free one is picked when absent. */
  port?: number;
  /** Extra postgresql.conf settings, e.g. { fsync: "off" }. */
  settings?: Record<string, string | number>;
  /** Server binaries to run instead of this machine's default ones (findPgBinaries). */
  binDir?: string;
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

const SUPERUSER = "postgres";

/** Password access over loopback, for clients and for replication; nothing else. */
const HBA =
  ["host all all 127.0.0.1/32 scram-sha-256", "host replication all 127.0.0.1/32 scram-sha-256"].join("\n") + "\n";

/** Settings every cluster we manage needs: physical and logical replication, loopback only. */
const BASE_SETTINGS: Record<string, string | number> = {
  listen_addresses: "'127.0.0.1'",
  unix_socket_directories: "''",
  wal_level: "logical",
  max_wal_senders: 16,
  max_replication_slots: 16,
  hot_standby: "on",
  hot_standby_feedback: "on",
  shared_buffers: "'32MB'",
  max_connections: 100,
  password_encryption: "'scram-sha-256'",
  wal_sender_timeout: "'10s'",
  wal_receiver_status_interval: "'1s'",
};

/**
 * Runs a program as the user PostgreSQL runs as (an unprivileged account when
 * we are root). Waits for the program's exit rather than for its pipes to
 * close, because pg_ctl leaves a daemon behind.
 */
export function runAsPostgres(
  cmd: string,
  args: string[],
  opts: { input?: string; timeoutMs?: number; env?: Record<string, string> } = {},
): Promise<RunResult> {
  const user = postgresRunAs();
  return new Promise((resolvePromise, reject) => {
    const child = spawn(cmd, args, {
      uid: user?.uid,
      gid: user?.gid,
      env: {
        PATH: process.env.PATH ?? "/usr/bin:/bin",
        LC_ALL: "C",
        HOME: user?.home ?? process.env.HOME ?? "/",
        ...opts.env,
      },
      stdio: ["pipe", "pipe", "pipe"],
      cwd: "/",
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const timer = opts.timeoutMs
      ? setTimeout(() => {
          child.kill("SIGKILL");
          reject(new UnavailableError(`${cmd} ${args.join(" ")} did not finish within ${opts.timeoutMs} ms`));
        }, opts.timeoutMs)
      : undefined;
    child.on("error", (e) => {
      if (timer) clearTimeout(timer);
      reject(e);
    });
    child.on("exit", (code) => {
      if (timer) clearTimeout(timer);
      // Let buffered output drain; the daemon may keep pipes open forever.
      setImmediate(() => {
        child.stdout.destroy();
        child.stderr.destroy();
        resolvePromise({ code: code ?? -1, stdout, stderr });
      });
    });
    if (opts.input !== undefined) child.stdin.end(opts.input);
    else child.stdin.end();
  });
}

/**
 * Hands a folder of ours to the postgres user. Its ancestors are not ours:
 * when the postgres user cannot traverse one, this says which and how to fix
 * it rather than changing its permissions.
 */
function handOver(path: string, user: OsUser | undefined): void {
  if (!user) return;
  assertReachable(dirname(resolve(path)), user, "the cluster folder");
  chownRecursive(path, user);
}

function chownRecursive(path: string, user: OsUser): void {
  chownSync(path, user.uid, user.gid);
  if (statSync(path).isDirectory()) {
    for (const entry of readdirSync(path)) chownRecursive(join(path, entry), user);
  }
}

function processAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The state follows the parenthesised command name.
    const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
    return state !== "Z" && state !== "X";
  } catch {
    return false;
  }
}

/** The settings a file written by renderSettings holds (a copy's, from a base backup); none when absent. */
export function readSettingsFile(path: string): Record<string, string> {
  if (!existsSync(path)) return {};
  const out: Record<string, string> = {};
  for (const line of readFileSync(path, "utf8").split("\n")) {
    const m = /^([A-Za-z_.]+) = (.*)$/.exec(line);
    if (m) out[m[1]!] = m[2]!;
  }
  return out;
}

export function renderSettings(settings: Record<string, string | number>): string {
  return (
    Object.entries(settings)
      .map(([k, v]) => `${k} = ${v}`)
      .join("\n") + "\n"
  );
}

/**
 * A PostgreSQL cluster on this machine, on loopback, password-protected.
 * Every method is idempotent: init on an initialised folder loads it, start on
 * a running cluster does nothing, stop on a stopped one does nothing.
 */
export class LocalCluster {
  private constructor(
    readonly dir: string,
    private meta: ClusterMeta,
  ) {}

  get dataDir(): string {
    return this.meta.dataDir ?? join(this.dir, "data");
  }
  get logFile(): string {
    return join(this.dir, "postgres.log");
  }
  get port(): number {
    return this.meta.port;
  }
  get password(): string {
    return this.meta.password;
  }
  get major(): number {
    return this.meta.major;
  }
  /** One of the server programs this cluster runs with. */
  bin(name: string): string {
    return this.meta.binDir ? join(this.meta.binDir, name) : pgBin(name);
  }
  get user(): string {
    return this.meta.user ?? SUPERUSER;
  }

  private static metaPath(dir: string): string {
    return join(dir, "cluster.json");
  }

  /** Loads a cluster folder created earlier, or undefined when there is none. */
  static load(dir: string): LocalCluster | undefined {
    const metaPath = LocalCluster.metaPath(dir);
    if (!existsSync(metaPath)) return undefined;
    const meta = JSON.parse(readFileSync(metaPath, "utf8")) as ClusterMeta;
    if (!existsSync(join(meta.dataDir ?? join(dir, "data"), "PG_VERSION"))) return undefined;
    return new LocalCluster(dir, meta);
  }

  /**
   * Records a cluster that runs already, somewhere on this machine, so that
   * it can be used by name. Its files stay where they are and as they are.
   */
  static register(dir: string, meta: ClusterMeta & { dataDir: string }): LocalCluster {
    mkdirSync(dir, { recursive: true });
    writeFileAtomic(LocalCluster.metaPath(dir), JSON.stringify(meta, null, 2));
    return new LocalCluster(dir, meta);
  }

  /** Creates a fresh cluster with initdb, or loads the one already there. */
  static async init(opts: ClusterOptions): Promise<LocalCluster> {
    const existing = LocalCluster.load(opts.dir);
    if (existing) return existing;
    const dataDir = join(opts.dir, "data");
    if (existsSync(dataDir) && readdirSync(dataDir).length > 0) {
      throw new FailedPreconditionError(
        `data directory ${dataDir} is not empty and holds no cluster of ours; remove it or choose another directory`,
      );
    }
    const found = opts.binDir ? { dir: opts.binDir, major: majorOf(opts.binDir) } : findPgBinaries();
    const user = postgresRunAs();
    assertReachable(dirname(resolve(opts.dir)), user, "the cluster folder");
    // Beside the cluster's folder, so that clusters under one root share one copy.
    const binDir = reachableBinDir(found.dir, user, dirname(resolve(opts.dir)));
    const bins = { ...found, dir: binDir };
    // The folders on the way are ours to make traversable (a recursive mkdir would give them the data dir's 0700).
    mkdirSync(opts.dir, { recursive: true, mode: 0o711 });
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    const options = ["-U", SUPERUSER, "--auth=scram-sha-256", "-E", "UTF8", "--locale=C"];
    const key = templateKey(bins.dir, options, user?.uid);
    const template = key ? findTemplate(key) : undefined;
    const meta: ClusterMeta = {
      port: opts.port ?? (await freePort()),
      password: randomBytes(12).toString("hex"),
      major: bins.major,
      ...(opts.binDir || binDir !== found.dir ? { binDir } : {}),
      ...(template ? { templatePassword: template.password } : {}),
    };
    if (template) {
      copyTemplate(template, dataDir);
      handOver(opts.dir, user);
    } else {
      const pwfile = join(opts.dir, "initdb.pw");
      writeFileSync(pwfile, meta.password + "\n", { mode: 0o600 });
      handOver(opts.dir, user);
      const res = await runAsPostgres(join(bins.dir, "initdb"), [
        "-D",
        dataDir,
        ...options,
        "--pwfile",
        pwfile,
        "--no-sync",
      ]);
      rmSync(pwfile, { force: true });
      if (res.code !== 0) {
        throw new InternalError(`initdb failed for ${dataDir} (exit ${res.code}): ${res.stderr.trim().slice(-2000)}`);
      }
      // initdb's output as it made it, before our settings go in: the next cluster on these binaries copies it.
      if (key) keepTemplate(key, dataDir, meta.password);
    }
    const cluster = new LocalCluster(opts.dir, meta);
    cluster.writeConfig({ ...BASE_SETTINGS, ...(opts.settings ?? {}) });
    cluster.writeDataFile("pg_hba.conf", HBA);
    writeFileAtomic(LocalCluster.metaPath(opts.dir), JSON.stringify(meta, null, 2));
    return cluster;
  }

  /**
   * Adopts a data directory that was produced another way (a base backup of
   * another cluster): gives it its own port and metadata. The password is the
   * one of the cluster it was copied from, since the catalog came along.
   */
  static adopt(dir: string, meta: ClusterMeta, settings: Record<string, string | number> = {}): LocalCluster {
    const cluster = new LocalCluster(dir, meta);
    handOver(dir, postgresRunAs());
    cluster.writeConfig({ ...BASE_SETTINGS, ...settings });
    writeFileAtomic(LocalCluster.metaPath(dir), JSON.stringify(meta, null, 2));
    return cluster;
  }

  /** Our settings live in an included file so that the rest of postgresql.conf stays PostgreSQL's. */
  writeConfig(settings: Record<string, string | number>): void {
    const conf = join(this.dataDir, "postgresql.conf");
    const text = readFileSync(conf, "utf8");
    if (!text.includes("include_if_exists = 'pgshift.conf'")) {
      const st = statSync(conf);
      writeFileAtomic(conf, text + "\ninclude_if_exists = 'pgshift.conf'\n", {
        mode: st.mode & 0o777,
        uid: st.uid,
        gid: st.gid,
      });
    }
    this.writeDataFile("pgshift.conf", renderSettings({ ...settings, port: this.meta.port }));
  }

  /** Where the server reads its client authentication rules. */
  get hbaFile(): string {
    return this.meta.hbaFile ?? join(this.dataDir, "pg_hba.conf");
  }

  /** Remembers where the server reads its rules (from its hba_file setting), for unfencing while it is down. */
  recordHbaFile(path: string): void {
    this.meta = { ...this.meta, hbaFile: path };
    writeFileAtomic(LocalCluster.metaPath(this.dir), JSON.stringify(this.meta, null, 2));
  }

  readDataFile(name: string): string {
    return readFileSync(join(this.dataDir, name), "utf8");
  }

  /** Writes a file in the data directory, owned by the user PostgreSQL runs as. */
  writeDataFile(name: string, content: string): void {
    const user = postgresRunAs();
    writeFileAtomic(join(this.dataDir, name), content, { mode: 0o600, uid: user?.uid, gid: user?.gid });
  }

  /**
   * Whether the postmaster lives. Not pg_ctl status: on machines whose init
   * does not reap orphans, a killed postmaster stays a zombie that signal 0
   * still reaches, so we read its state from /proc.
   */
  async isRunning(): Promise<boolean> {
    const pid = this.postmasterPid();
    return pid !== undefined && processAlive(pid);
  }

  /**
   * The first start of a cluster just made: the free port it was given may be
   * taken by another process before the server binds it (tests and migrations
   * run side by side). Nobody knows this port yet, so another is picked.
   */
  async startNew(): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.start();
      } catch (e) {
        if (attempt >= 3 || !/could not bind .* Address already in use/.test(this.tailLog(15))) throw e;
        this.meta.port = await freePort();
        const conf = join(this.dataDir, "pgshift.conf");
        this.writeDataFile(
          "pgshift.conf",
          readFileSync(conf, "utf8").replace(/^port = .*$/m, `port = ${this.meta.port}`),
        );
        writeFileAtomic(LocalCluster.metaPath(this.dir), JSON.stringify(this.meta, null, 2));
      }
    }
  }

  async start(): Promise<void> {
    if (await this.isRunning()) return this.takeOwnPassword();
    // A postmaster that died (crash, kill -9) leaves its pid file behind, and a
    // zombie would make PostgreSQL believe it still runs: the file is stale.
    if (this.postmasterPid() !== undefined) rmSync(join(this.dataDir, "postmaster.pid"), { force: true });
    const res = await runAsPostgres(
      this.bin("pg_ctl"),
      ["start", "-D", this.dataDir, "-l", this.logFile, "-w", "-t", "120"],
      { timeoutMs: 130_000 },
    );
    if (res.code !== 0) {
      throw new UnavailableError(
        `PostgreSQL in ${this.dataDir} did not start (exit ${res.code}): ${res.stderr.trim()}; last log lines: ${this.tailLog(15)}`,
      );
    }
    await this.takeOwnPassword();
  }

  /**
   * A cluster copied from initdb's cache has, at its first start, the superuser password its catalog came with: it
   * takes its own then. Safe to repeat: after a crash between the change and its record, the inherited password is
   * refused and the cluster's own works.
   */
  private async takeOwnPassword(): Promise<void> {
    const inherited = this.meta.templatePassword;
    if (!inherited) return;
    const client = new pg.Client({ ...this.connectionConfig(), password: inherited });
    client.on("error", () => {});
    // Refused (28P01): the change was made, its record was not.
    const reached = await client.connect().then(
      () => true,
      (e: unknown) => {
        if ((e as { code?: string }).code !== "28P01") throw e;
        return false;
      },
    );
    if (reached) {
      try {
        await keepOutOfServerLog(client);
        await client.query(
          `alter role ${pg.escapeIdentifier(this.user)} password ${pg.escapeLiteral(this.meta.password)}`,
        );
      } finally {
        await client.end().catch(() => {});
      }
    }
    const { templatePassword: _, ...own } = this.meta;
    this.meta = own;
    writeFileAtomic(LocalCluster.metaPath(this.dir), JSON.stringify(this.meta, null, 2));
  }

  async stop(mode: "smart" | "fast" | "immediate" = "fast"): Promise<void> {
    if (!(await this.isRunning())) return;
    const res = await runAsPostgres(this.bin("pg_ctl"), ["stop", "-D", this.dataDir, "-m", mode, "-w", "-t", "60"], {
      timeoutMs: 70_000,
    });
    if (res.code !== 0 && (await this.isRunning())) {
      throw new UnavailableError(`PostgreSQL in ${this.dataDir} did not stop: ${res.stderr.trim()}`);
    }
  }

  async reload(): Promise<void> {
    const res = await runAsPostgres(this.bin("pg_ctl"), ["reload", "-D", this.dataDir]);
    if (res.code !== 0) throw new UnavailableError(`reload of ${this.dataDir} failed: ${res.stderr.trim()}`);
  }

  /** The postmaster's pid, or undefined when it is not running. */
  postmasterPid(): number | undefined {
    const pidFile = join(this.dataDir, "postmaster.pid");
    if (!existsSync(pidFile)) return undefined;
    const pid = Number(readFileSync(pidFile, "utf8").split("\n")[0]);
    return Number.isFinite(pid) && pid > 0 ? pid : undefined;
  }

  /** Kills the postmaster with SIGKILL, the way a crash would. */
  crash(): void {
    const pid = this.postmasterPid();
    if (pid) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // Already gone.
      }
    }
  }

  tailLog(lines: number): string {
    if (!existsSync(this.logFile)) return "(no log)";
    return readFileSync(this.logFile, "utf8").trim().split("\n").slice(-lines).join("\n");
  }

  connectionConfig(database = "postgres"): pg.ClientConfig {
    return { host: "127.0.0.1", port: this.port, user: this.user, password: this.password, database };
  }

  url(database = "postgres"): string {
    return `postgres://${this.user}:${encodeURIComponent(this.password)}@127.0.0.1:${this.port}/${database}`;
  }

  /** Runs one statement on a short-lived connection. */
  async query<R extends pg.QueryResultRow = pg.QueryResultRow>(
    sql: string,
    params: unknown[] = [],
    database = "postgres",
  ): Promise<R[]> {
    const client = new pg.Client(this.connectionConfig(database));
    await client.connect();
    try {
      return (await client.query<R>(sql, params)).rows;
    } finally {
      await client.end();
    }
  }

  /** Stops the cluster and removes its folder; a registered cluster is only forgotten, never stopped. */
  async destroy(): Promise<void> {
    if (this.meta.dataDir) {
      rmSync(this.dir, { recursive: true, force: true });
      return;
    }
    try {
      await this.stop("immediate");
    } catch {
      this.crash();
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}
