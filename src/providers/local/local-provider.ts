import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { writeFileAtomic } from "../../support/atomic-file.js";
import { statfs } from "node:fs/promises";
import { join } from "node:path";
import { check, formatBytes, type CheckResult } from "../../domain/check.js";
import pg from "pg";
import { InvalidArgumentError } from "../../domain/errors.js";
import { availableExtensions, findPgBinaries } from "../../postgres/binaries.js";
import { reachableBinDir } from "../../postgres/reach.js";
import { LocalCluster, readSettingsFile, runAsPostgres } from "../../postgres/cluster.js";
import { postgresRunAs } from "../../postgres/os-user.js";
import { freePort } from "../../postgres/ports.js";
import {
  InvalidInstanceStateError,
  ReplicaDownError,
  ReplayTimeoutError,
  UnknownInstanceError,
  VersionMismatchError,
} from "../errors.js";
import { lsnAtLeast, type Lsn } from "../../domain/lsn.js";
import type { Retirement } from "../../domain/spec.js";
import type { StorageFigures } from "../../domain/storage.js";
import type { Endpoint, InstanceDescription, InstanceRef, Provider, ReplicationStatus } from "../provider.js";
import { closeIdle, connectTo, sqlPort, withClient } from "../connect.js";
import { endForeignSessions, PostgresAdmin } from "../postgres-admin.js";
import type { PeerConnection, SqlPort } from "../sql.js";
import { fenceHba, isFencedHba, unfenceHba } from "./fence.js";
import { createFenceRole, dropFenceRole, FENCE_ROLE, fenceCredentials } from "./fence-role.js";
import { claimFolder, dropStaging, markedOwner } from "./owner-mark.js";

const NAME = /^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$/;
/** In a cluster folder pgshift created for a migration: which migration. */

/** The physical slot on the source that keeps the WAL a replica still needs. */
export function replicaSlotName(target: string): string {
  return `pgshift_${target.toLowerCase().replace(/[^a-z0-9_]/g, "_")}`.slice(0, 63);
}

/** Source and target run the same major version: physical replication does not cross majors. */
export function checkSameMajor(instance: string, sourceMajor: number, binariesMajor: number): void {
  if (sourceMajor !== binariesMajor) {
    throw new VersionMismatchError(
      instance,
      `${instance} runs PostgreSQL ${sourceMajor} but the binaries here are PostgreSQL ${binariesMajor}; physical replication needs the same major version: point PGSHIFT_PG_BIN at PostgreSQL ${sourceMajor} binaries`,
    );
  }
}

export interface RegisterOptions {
  dataDir: string;
  port: number;
  user: string;
  password: string;
}

/**
 * The embedded provider: PostgreSQL clusters on this machine. A "source" is
 * a cluster standing in for an RDS instance; a "target" is a physical standby
 * standing in for the Aurora replica, made from a base backup of the source
 * and streaming its WAL through a physical slot.
 */
export class LocalProvider implements Provider {
  readonly kind = "local" as const;

  constructor(readonly root: string) {
    mkdirSync(join(root, "clusters"), { recursive: true });
  }

  private dirOf(name: string): string {
    if (!NAME.test(name))
      throw new InvalidArgumentError(
        `"${name}" is not a valid local cluster name: letters, digits, "_" and "-", up to 63`,
      );
    return join(this.root, "clusters", name);
  }

  /** The cluster behind a ref, or NOT_FOUND saying how to make one. */
  cluster(ref: InstanceRef): LocalCluster {
    const c = LocalCluster.load(this.dirOf(ref.id));
    if (!c) {
      throw new UnknownInstanceError(
        ref.id,
        `no local cluster of that name under ${this.root}; create one (pgshift local sample) or register an existing one (pgshift local register)`,
      );
    }
    return c;
  }

  list(): string[] {
    const dir = join(this.root, "clusters");
    return readdirSync(dir).filter((n) => LocalCluster.load(join(dir, n)));
  }

  /** Creates and starts a new cluster under our root (for sample sources). */
  async createCluster(name: string, settings: Record<string, string | number> = {}): Promise<LocalCluster> {
    const c = await LocalCluster.init({ dir: this.dirOf(name), settings });
    await c.startNew();
    return c;
  }

  /**
   * Registers a running cluster on this machine as a source. Its data
   * directory must be reachable (fencing edits its pg_hba.conf) and must be
   * the one the server at that port really runs on.
   */
  async register(name: string, opts: RegisterOptions): Promise<LocalCluster> {
    const dir = this.dirOf(name);
    if (LocalCluster.load(dir))
      throw new InvalidArgumentError(`a local cluster named "${name}" exists already; choose another name`);
    if (!existsSync(join(opts.dataDir, "PG_VERSION"))) {
      throw new InvalidArgumentError(
        `${opts.dataDir} is not a PostgreSQL data directory (no PG_VERSION); give the directory the server runs on`,
      );
    }
    const config: pg.ClientConfig = {
      host: "127.0.0.1",
      port: opts.port,
      user: opts.user,
      password: opts.password,
      database: "postgres",
    };
    const info = await withClient(name, config, async (c) => {
      const r = await c.query<{ data_directory: string; num: string; su: boolean }>(
        "select current_setting('data_directory') as data_directory, current_setting('server_version_num') as num, (select rolsuper from pg_roles where rolname = current_user) as su",
      );
      return r.rows[0]!;
    });
    if (!info.su)
      throw new InvalidArgumentError(
        `user "${opts.user}" is not a superuser on ${name}; register with a superuser (fencing and replication need one)`,
      );
    const { realpathSync } = await import("node:fs");
    if (realpathSync(info.data_directory) !== realpathSync(opts.dataDir)) {
      throw new InvalidArgumentError(
        `the server on port ${opts.port} runs on ${info.data_directory}, not on ${opts.dataDir}; give its own data directory`,
      );
    }
    return LocalCluster.register(dir, {
      port: opts.port,
      password: opts.password,
      user: opts.user,
      major: Math.floor(Number(info.num) / 10000),
      dataDir: opts.dataDir,
    });
  }

  sql(ref: InstanceRef, database = "postgres"): SqlPort {
    // Resolved per call, so a ref to a cluster that does not exist fails when used, naming it.
    const port = () => sqlPort(ref.id, this.adminConfig(ref, database));
    return { query: (text, params) => port().query(text, params), session: (fn) => port().session(fn) };
  }

  async peerConnection(ref: InstanceRef, database: string): Promise<PeerConnection> {
    const c = this.cluster(ref);
    return { host: "127.0.0.1", port: c.port, user: c.user, password: c.password, database };
  }

  /** The SQL-level operations every provider shares, on this cluster. */
  private pg(ref: InstanceRef): PostgresAdmin {
    return new PostgresAdmin(ref.id, (database) => this.adminConfig(ref, database));
  }

  private admin<T>(ref: InstanceRef, fn: (c: pg.Client) => Promise<T>, database = "postgres"): Promise<T> {
    return withClient(ref.id, this.adminConfig(ref, database), fn);
  }

  /**
   * Rows of a statement on a cluster as pgshift logs in to it now (its admin, or the fence's role while it is
   * fenced: the only role a fenced cluster admits), with the database's own search_path: for tooling that reads a
   * cluster's tables (the demo's accounting, tests), never for pgshift's own work.
   */
  async query<R extends pg.QueryResultRow = pg.QueryResultRow>(
    ref: InstanceRef,
    text: string,
    params: unknown[] = [],
    database = "postgres",
  ): Promise<R[]> {
    const client = new pg.Client(this.adminConfig(ref, database));
    client.on("error", () => {});
    await client.connect();
    try {
      return (await client.query<R>(text, params)).rows;
    } finally {
      await client.end().catch(() => {});
    }
  }

  /** How pgshift logs in: as the cluster's admin, or, while it is fenced, as the fence's own role (the only one it admits). */
  private adminConfig(ref: InstanceRef, database = "postgres"): pg.ClientConfig {
    const c = this.cluster(ref);
    return { ...c.connectionConfig(database), ...fenceCredentials(c.dir) };
  }

  async replicaMajor(): Promise<number> {
    // Replicas are made with the binaries on this machine.
    return findPgBinaries().major;
  }

  async targetExtensions(source: InstanceRef): Promise<Map<string, string[]>> {
    // The replica runs this machine's binaries, which may not be the ones the source runs (a registered cluster).
    this.cluster(source);
    return availableExtensions(findPgBinaries().dir);
  }

  async dropInactiveSlot(ref: InstanceRef, slot: string): Promise<bigint> {
    return this.pg(ref).dropInactiveSlot(slot);
  }

  async endpoint(ref: InstanceRef): Promise<Endpoint> {
    return { host: "127.0.0.1", port: this.cluster(ref).port };
  }

  async currentLsn(ref: InstanceRef): Promise<Lsn> {
    return this.pg(ref).currentLsn();
  }

  async walGenerationRate(ref: InstanceRef, sampleMs: number): Promise<number> {
    return this.pg(ref).walGenerationRate(sampleMs);
  }

  async describe(ref: InstanceRef): Promise<InstanceDescription> {
    return this.pg(ref).describe(ref);
  }

  /**
   * The target is a copy of the source's files on this machine: the filesystem under our root must hold the
   * source's databases with room to spare (a fifth more, for WAL written while it is made).
   */
  async platformChecks(source: InstanceRef): Promise<CheckResult[]> {
    const { sizeBytes } = await this.describe(source);
    const fs = await statfs(this.root, { bigint: true });
    const free = fs.bavail * fs.bsize;
    const need = (sizeBytes * 6n) / 5n;
    return [
      check("local.disk_space", free >= need ? "PASS" : "FAIL", {
        measured: `${formatBytes(free)} free under ${this.root}`,
        threshold: `${formatBytes(need)} (the source's ${formatBytes(sizeBytes)} and a fifth more)`,
        message: free >= need ? "" : "the replica would not fit on this machine's filesystem",
        remedy:
          free >= need
            ? ""
            : `free space under ${this.root}, or run the service with a --data-dir on a larger filesystem`,
      }),
    ];
  }

  async exists(ref: InstanceRef): Promise<boolean> {
    return existsSync(this.dirOf(ref.id));
  }

  /** The migration that created the cluster folder, from the mark written before anything else in it. */
  ownerOf(name: string): string | undefined {
    return markedOwner(this.dirOf(name));
  }

  async createReplica(source: InstanceRef, target: InstanceRef, owner: string): Promise<void> {
    const src = this.cluster(source);
    const targetDir = this.dirOf(target.id);
    if (existsSync(targetDir)) {
      const mark = this.ownerOf(target.id);
      if (mark !== owner) {
        throw new InvalidInstanceStateError(
          target.id,
          `${target.id} exists and was not created by migration ${owner} (${mark ? `migration ${mark} created it` : "pgshift did not create it"}); it is never adopted or overwritten: name a new target`,
        );
      }
    } else {
      // The folder comes into being with the mark: whatever happens next, it is known to be ours.
      claimFolder(targetDir, owner);
    }
    const existing = LocalCluster.load(targetDir);
    if (existing) {
      // Made already (a retry, or a resumed step): just make sure it runs.
      await existing.start();
      return;
    }
    const bins = findPgBinaries();
    // Beside the clusters (as LocalCluster.init places them), should the postgres user not reach the default binaries.
    const binDir = reachableBinDir(bins.dir, postgresRunAs(), join(this.root, "clusters"));
    const slot = replicaSlotName(target.id);
    await this.admin(source, async (c) => {
      const r = await c.query<{ num: string; rec: boolean }>(
        "select current_setting('server_version_num') as num, pg_is_in_recovery() as rec",
      );
      checkSameMajor(source.id, Math.floor(Number(r.rows[0]!.num) / 10000), bins.major);
      if (r.rows[0]!.rec)
        throw new InvalidInstanceStateError(source.id, `${source.id} is itself a standby; migrate from its primary`);
      const level = await c.query<{ wal_level: string }>("select current_setting('wal_level') as wal_level");
      if (level.rows[0]!.wal_level === "minimal") {
        throw new InvalidInstanceStateError(
          source.id,
          `${source.id} has wal_level=minimal, which cannot feed a replica; set wal_level=replica or logical and restart it`,
        );
      }
      const has = await c.query("select 1 from pg_replication_slots where slot_name = $1", [slot]);
      if (has.rowCount === 0) await c.query("select pg_create_physical_replication_slot($1, true)", [slot]);
    });
    // Our folder without a cluster is what a crashed earlier attempt of ours left: start over, keeping the mark.
    const dataDir = join(targetDir, "data");
    rmSync(dataDir, { recursive: true, force: true });
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    const user = postgresRunAs();
    if (user) {
      const { chownSync } = await import("node:fs");
      chownSync(targetDir, user.uid, user.gid);
      chownSync(dataDir, user.uid, user.gid);
    }
    // The password travels in the child's environment, never on its command line (which ps shows to every user).
    const conn = conninfo({ host: "127.0.0.1", port: String(src.port), user: src.user, application_name: slot });
    const res = await runAsPostgres(
      join(binDir, "pg_basebackup"),
      ["-D", dataDir, "-d", conn, "-X", "stream", "-S", slot, "-R", "-c", "fast", "--no-sync"],
      {
        timeoutMs: 30 * 60_000,
        env: { PGPASSWORD: src.password },
      },
    );
    if (res.code !== 0) {
      rmSync(dataDir, { recursive: true, force: true });
      throw new InvalidInstanceStateError(
        target.id,
        `base backup of ${source.id} for ${target.id} failed: ${res.stderr.trim().slice(-1500)}`,
      );
    }
    // The copy came with the source's settings (a standby refuses to start with less of max_prepared_transactions,
    // max_connections… than its primary has); the replica gets its own port and keeps the rest.
    const { port: _port, ...copied } = readSettingsFile(join(dataDir, "pgshift.conf"));
    const replica = LocalCluster.adopt(
      targetDir,
      {
        port: await freePort(),
        password: src.password,
        user: src.user,
        major: bins.major,
        ...(binDir !== bins.dir ? { binDir } : {}),
      },
      copied,
    );
    await replica.start();
  }

  async replicationStatus(source: InstanceRef, target: InstanceRef): Promise<ReplicationStatus> {
    const tgt = this.cluster(target);
    const slot = replicaSlotName(target.id);
    const targetRunning = await tgt.isRunning();
    return this.admin(source, async (c) => {
      const r = await c.query<{
        cur: string;
        state: string | null;
        replay: string | null;
        lag: string | null;
        lag_s: number | null;
      }>(
        `select pg_current_wal_lsn()::text as cur, r.state, r.replay_lsn::text as replay,
                pg_wal_lsn_diff(pg_current_wal_lsn(), coalesce(r.replay_lsn, s.restart_lsn))::bigint::text as lag,
                extract(epoch from r.replay_lag)::float8 as lag_s
           from pg_replication_slots s left join pg_stat_replication r on r.pid = s.active_pid
          where s.slot_name = $1`,
        [slot],
      );
      const row = r.rows[0];
      if (!row) {
        const cur = await c.query<{ cur: string }>("select pg_current_wal_lsn()::text as cur");
        return {
          state: "stopped",
          targetRunning,
          sourceLsn: cur.rows[0]!.cur,
          replayLsn: null,
          lagBytes: null,
          lagSeconds: null,
        };
      }
      const state = !targetRunning
        ? "stopped"
        : row.state === "streaming"
          ? "streaming"
          : row.state === "catchup"
            ? "catchup"
            : "starting";
      const lagBytes = row.lag === null ? null : BigInt(row.lag);
      return {
        state,
        targetRunning,
        sourceLsn: row.cur,
        replayLsn: row.replay,
        lagBytes,
        // replay_lag is NULL once the standby reported it had caught up, until it next lags:
        // while streaming that reads as no time lag (the byte lag still says how far behind).
        lagSeconds: row.lag_s ?? (state === "streaming" ? 0 : null),
      };
    });
  }

  async isFenced(ref: InstanceRef): Promise<boolean> {
    const c = this.cluster(ref);
    return isFencedHba(readFileSync(c.hbaFile, "utf8"));
  }

  /** Where the cluster keeps its pg_hba.conf as it was before the fence, until unfence puts it back. */
  private originalHbaPath(c: LocalCluster): string {
    return join(c.dir, "pg_hba.conf.before-fence");
  }

  async fence(ref: InstanceRef): Promise<void> {
    const c = this.cluster(ref);
    await this.admin(ref, async (db) => {
      // The role the fence admits comes first: from the moment the rules change, pgshift logs in as nothing else.
      await createFenceRole(db, ref.id, c.dir);
      await this.writeFenceRules(db, c, FENCE_ROLE);
      // Every session pgshift did not open ends, the superuser's too, whatever it calls itself.
      await endForeignSessions(db, this.adminConfig(ref), ref.id);
    });
  }

  /**
   * Only the rules of a fence, admitting `role` and ending no session: what a network fence does to who may connect
   * (the RDS endpoint in tests: a deny-all security group that still admits the control plane, then a reboot).
   */
  async fenceRules(ref: InstanceRef, role: string): Promise<void> {
    const c = this.cluster(ref);
    await this.admin(ref, (db) => this.writeFenceRules(db, c, role));
  }

  private async writeFenceRules(db: pg.Client, c: LocalCluster, role: string): Promise<void> {
    // The server's own idea of where its rules are (a Debian layout keeps them outside the data directory).
    const hbaFile = (await db.query<{ f: string }>("select current_setting('hba_file') as f")).rows[0]!.f;
    if (hbaFile !== c.hbaFile) c.recordHbaFile(hbaFile);
    const hba = readFileSync(hbaFile, "utf8");
    if (!isFencedHba(hba)) {
      // The original is kept, whole, before the file changes: unfence restores it byte for byte, even after a crash here.
      if (!existsSync(this.originalHbaPath(c))) writeFileAtomic(this.originalHbaPath(c), hba);
      writeLike(hbaFile, fenceHba(hba, role));
    }
    await db.query("select pg_reload_conf()");
  }

  async unfence(ref: InstanceRef): Promise<void> {
    const c = this.cluster(ref);
    const hbaFile = c.hbaFile;
    const original = this.originalHbaPath(c);
    if (existsSync(original)) {
      writeLike(hbaFile, readFileSync(original, "utf8"));
    } else {
      // Fenced by an older pgshift, which kept no copy: its block is removed, exactly.
      const hba = readFileSync(hbaFile, "utf8");
      if (isFencedHba(hba)) writeLike(hbaFile, unfenceHba(hba));
    }
    await this.admin(ref, async (db) => void (await db.query("select pg_reload_conf()")));
    rmSync(original, { force: true });
    // The cluster's own rules are back: pgshift logs in as the admin again, and the fence's role goes.
    await this.dropFenceRole(ref);
  }

  async fencedPosition(ref: InstanceRef): Promise<{ lsn: Lsn; intruders: string[] }> {
    return this.pg(ref).fencedPosition();
  }

  async intruders(ref: InstanceRef): Promise<string[]> {
    return this.pg(ref).intruders();
  }

  async waitForReplay(target: InstanceRef, lsn: Lsn, timeoutMs: number): Promise<void> {
    const tgt = this.cluster(target);
    const deadline = Date.now() + timeoutMs;
    if (!(await tgt.isRunning()))
      throw new ReplicaDownError(target.id, `postmaster not running; last log lines: ${tgt.tailLog(5)}`);
    // One connection for the whole wait: this runs inside the write-unavailability window.
    await this.admin(target, async (c) => {
      let reached: string | null;
      while (true) {
        const r = (
          await c.query<{ rec: boolean; lsn: string | null }>(
            "select pg_is_in_recovery() as rec, pg_last_wal_replay_lsn()::text as lsn",
          )
        ).rows[0]!;
        // A promoted target has everything it replayed before promotion and more.
        if (!r.rec) return;
        reached = r.lsn;
        if (reached && lsnAtLeast(reached, lsn)) return;
        if (Date.now() > deadline) throw new ReplayTimeoutError(target.id, lsn, reached, timeoutMs);
        if (!(await tgt.isRunning()))
          throw new ReplicaDownError(target.id, `postmaster not running; last log lines: ${tgt.tailLog(5)}`);
        await new Promise((res) => setTimeout(res, 5));
      }
    }).catch(async (e: unknown) => {
      // A replica that died mid-wait shows as a lost connection: say what really happened.
      if (!(await tgt.isRunning()))
        throw new ReplicaDownError(target.id, `postmaster not running; last log lines: ${tgt.tailLog(5)}`);
      throw e;
    });
  }

  async promote(source: InstanceRef, target: InstanceRef): Promise<void> {
    const tgt = this.cluster(target);
    if (!(await tgt.isRunning())) throw new ReplicaDownError(target.id, "postmaster not running");
    await this.admin(target, async (c) => {
      const rec = await c.query<{ rec: boolean }>("select pg_is_in_recovery() as rec");
      // Already promoted: promoting twice would be the one thing worse than not at all.
      // pg_promote(wait) checks only every 100 ms; we watch more closely: this is inside the cutover window.
      if (rec.rows[0]!.rec) await c.query("select pg_promote(false)");
      for (let i = 0; i < 12_000; i++) {
        const w = await c.query<{ rec: boolean }>("select pg_is_in_recovery() as rec");
        if (!w.rows[0]!.rec) return;
        await new Promise((res) => setTimeout(res, 5));
      }
      throw new InvalidInstanceStateError(target.id, `${target.id} did not finish promotion within 60 s; see its log`);
    });
  }

  async detachReplica(source: InstanceRef, target: InstanceRef): Promise<void> {
    await this.dropReplicaSlot(source, target);
    // The fence's role reached the replica with the rest of the source's WAL; the promoted target is no fence's.
    if (!fenceCredentials(this.cluster(target).dir)) await this.dropFenceRole(target);
  }

  /** The fence's role out of the cluster, as its own admin (whom the cluster's rules admit, unfenced). */
  private async dropFenceRole(ref: InstanceRef): Promise<void> {
    const c = this.cluster(ref);
    // Our own idle sessions of the role would keep it from being dropped now.
    await closeIdle(c.connectionConfig("postgres"), FENCE_ROLE);
    return dropFenceRole((database) => connectTo(ref.id, c.connectionConfig(database)), ref.id, c.dir, c.user);
  }

  private async dropReplicaSlot(source: InstanceRef, target: InstanceRef): Promise<void> {
    const slot = replicaSlotName(target.id);
    await this.admin(source, async (c) => {
      for (let i = 0; i < 100; i++) {
        const r = await c.query<{ active: boolean }>("select active from pg_replication_slots where slot_name = $1", [
          slot,
        ]);
        if (r.rowCount === 0) return;
        if (!r.rows[0]!.active) {
          await c.query("select pg_drop_replication_slot($1)", [slot]);
          return;
        }
        // The walsender ends shortly after its standby stops or is promoted.
        await new Promise((res) => setTimeout(res, 100));
      }
      throw new InvalidInstanceStateError(
        source.id,
        `slot ${slot} on ${source.id} is still in use; stop ${target.id} first`,
      );
    });
  }

  async retire(ref: InstanceRef, how: Retirement): Promise<string> {
    // Stopping keeps the data directory: a local cluster has no snapshot to fall back on, so it is never deleted.
    const c = this.cluster(ref);
    await c.stop("fast");
    return how === "delete"
      ? `${ref.id} stopped; the local provider deletes no cluster (it has no snapshot to keep): its folder ${c.dir} is yours to remove`
      : `${ref.id} stopped; its folder ${c.dir} is kept`;
  }

  async storage(ref: InstanceRef): Promise<StorageFigures | undefined> {
    const c = this.cluster(ref);
    const [fs, wal] = await Promise.all([
      statfs(c.dataDir, { bigint: true }),
      this.pg(ref).run(async (db) =>
        Number(
          (await db.query<{ b: string }>("select coalesce(sum(size), 0)::text as b from pg_ls_waldir()")).rows[0]!.b,
        ),
      ),
    ]);
    return {
      freeBytes: Number(fs.bavail * fs.bsize),
      totalBytes: Number(fs.blocks * fs.bsize),
      walBytes: wal,
      by: `the file system of ${c.dataDir}`,
    };
  }

  async keepRetired(ref: InstanceRef): Promise<string | undefined> {
    const c = this.cluster(ref);
    if (!(await c.isRunning())) return undefined;
    await c.stop("fast");
    return `${ref.id} was running again; stopped again`;
  }

  async deleteReplica(
    source: InstanceRef,
    target: InstanceRef,
    owner: string,
  ): Promise<"deleted" | "absent" | "not-ours"> {
    const dir = this.dirOf(target.id);
    // The mark is written before the slot is made: no folder, nothing of ours on either side (the source may be down).
    if (!existsSync(dir)) {
      dropStaging(dir, owner);
      return "absent";
    }
    // Only what this migration created: a folder without its mark is somebody's database.
    if (this.ownerOf(target.id) !== owner) return "not-ours";
    // The replica stops first (its walsender on the source ends), then its slot goes, and only then its folder with
    // the mark: a cleanup that fails half-way (the source down) is retried and still finds what is ours.
    const tgt = LocalCluster.load(dir);
    if (tgt) await tgt.stop("immediate").catch(() => tgt.crash());
    await this.dropReplicaSlot(source, target);
    if (tgt) await tgt.destroy();
    rmSync(dir, { recursive: true, force: true });
    return "deleted";
  }
}

/** Replaces a file of the server's atomically, keeping its owner and mode. */
function writeLike(path: string, content: string): void {
  const st = statSync(path);
  writeFileAtomic(path, content, { mode: st.mode & 0o777, uid: st.uid, gid: st.gid });
}

/** A libpq connection string with every value quoted as libpq wants (backslash and quote escaped). */
function conninfo(params: Record<string, string>): string {
  return Object.entries(params)
    .map(([k, v]) => `${k}='${v.replace(/\\/g, "\\\\").replace(/'/g, "\\'")}'`)
    .join(" ");
}
