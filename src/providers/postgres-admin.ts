import type pg from "pg";
import { lsnDiff, type Lsn } from "../domain/lsn.js";
import { connectsSettled, ownSessions, withClient } from "./connect.js";
import { InvalidInstanceStateError, UnknownInstanceError } from "./errors.js";
import type { InstanceDescription, InstanceRef, SlotInfo } from "./provider.js";

/** Client sessions but the caller's own and those whose PIDs $1 lists (this process's). */
const FOREIGN_SESSIONS = `from pg_stat_activity where backend_type = 'client backend' and pid <> pg_backend_pid() and not (pid = any($1::int[]))`;
/** Each such session, as an operator would look for it. */
const SESSIONS = `coalesce(json_agg(json_build_object('pid', pid, 'who', format('pid %s (role %s, application %s, from %s)', pid, usename, coalesce(nullif(application_name, ''), 'unnamed'), coalesce(client_addr::text, 'a local socket'))) order by pid), '[]')`;

type Session = { pid: number; who: string };

/** Of the sessions a look found, those that are not this process's, once the connections it was opening are known. */
async function notOurs(sessions: Session[], config: pg.ClientConfig): Promise<Session[]> {
  if (sessions.length === 0) return sessions;
  await connectsSettled(config);
  const own = new Set(ownSessions(config));
  return sessions.filter((s) => !own.has(s.pid));
}

/**
 * Ends every client session on the server that this process did not open, whatever its role or application name
 * (the superuser's too), until none is left twice in a row: a login may slip in while a fence takes effect.
 */
export async function endForeignSessions(c: pg.Client, config: pg.ClientConfig, instance: string): Promise<void> {
  // Two quiet looks 10 ms apart: a session that logged in under the old rules shows up by then. One that slips past
  // later is still caught: the final LSN is read with the list of sessions, and looked at again before promotion.
  let quiet = 0;
  for (let i = 0; i < 500 && quiet < 2; i++) {
    const found = (
      await c.query<{ s: Session[] }>(`select ${SESSIONS} as s ${FOREIGN_SESSIONS}`, [ownSessions(config)])
    ).rows[0]!.s;
    const foreign = await notOurs(found, config);
    if (foreign.length > 0)
      await c.query("select pg_terminate_backend(pid) from unnest($1::int[]) pid", [foreign.map((s) => s.pid)]);
    quiet = foreign.length === 0 ? quiet + 1 : 0;
    if (quiet < 2) await new Promise((res) => setTimeout(res, 10));
  }
  if (quiet < 2)
    throw new InvalidInstanceStateError(
      instance,
      `client sessions on ${instance} kept coming back for 5 s after the fence; some role still logs in`,
    );
}

/** How to reach one database of an instance as its admin (credentials may be looked up, or minted, per call). */
export type AdminConfig = (database: string) => pg.ClientConfig | Promise<pg.ClientConfig>;

/**
 * What every provider does over SQL the same way, whoever runs the server: describe it, read its WAL position and
 * rate, drop an idle slot. A provider says only how to connect.
 */
export class PostgresAdmin {
  constructor(
    readonly instance: string,
    private readonly config: AdminConfig,
  ) {}

  /** Runs fn on a short-lived admin connection to one database. */
  async run<T>(fn: (c: pg.Client) => Promise<T>, database = "postgres"): Promise<T> {
    return withClient(this.instance, await this.config(database), fn);
  }

  /** Ends every client session on the server that this process did not open (see endForeignSessions). */
  async endForeignSessions(): Promise<void> {
    const config = await this.config("postgres");
    await withClient(this.instance, config, (c) => endForeignSessions(c, config, this.instance));
  }

  /**
   * The WAL position of a fenced server and, read in the same statement, the client sessions this process did not
   * open: a session found there got past the fence, and its writes may follow the position.
   */
  async fencedPosition(): Promise<{ lsn: Lsn; intruders: string[] }> {
    const config = await this.config("postgres");
    return withClient(this.instance, config, async (c) => {
      const r = await c.query<{ lsn: string; s: Session[] }>(
        `select pg_current_wal_lsn()::text as lsn, (select ${SESSIONS} ${FOREIGN_SESSIONS}) as s`,
        [ownSessions(config)],
      );
      return { lsn: r.rows[0]!.lsn, intruders: (await notOurs(r.rows[0]!.s, config)).map((s) => s.who) };
    });
  }

  /** The client sessions on the server that this process did not open, described. */
  async intruders(): Promise<string[]> {
    const config = await this.config("postgres");
    return withClient(this.instance, config, async (c) => {
      const found = (
        await c.query<{ s: Session[] }>(`select ${SESSIONS} as s ${FOREIGN_SESSIONS}`, [ownSessions(config)])
      ).rows[0]!.s;
      return (await notOurs(found, config)).map((s) => s.who);
    });
  }

  async dropInactiveSlot(slot: string): Promise<bigint> {
    return this.run(async (c) => {
      const r = await c.query<{ active: boolean; retained: string | null }>(
        "select active, pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint::text as retained from pg_replication_slots where slot_name = $1",
        [slot],
      );
      const row = r.rows[0];
      if (!row)
        throw new UnknownInstanceError(
          `${this.instance}/${slot}`,
          `${this.instance} has no replication slot named "${slot}"`,
        );
      if (row.active)
        throw new InvalidInstanceStateError(
          this.instance,
          `slot ${slot} on ${this.instance} is in use by a consumer; stop the consumer first, or let it catch up`,
        );
      await c.query("select pg_drop_replication_slot($1)", [slot]);
      return BigInt(row.retained ?? "0");
    });
  }

  async currentLsn(): Promise<Lsn> {
    return this.run(async (c) => {
      const r = await c.query<{ lsn: string }>(
        "select (case when pg_is_in_recovery() then pg_last_wal_replay_lsn() else pg_current_wal_lsn() end)::text as lsn",
      );
      return r.rows[0]!.lsn;
    });
  }

  async walGenerationRate(sampleMs: number): Promise<number> {
    const a = await this.currentLsn();
    const t0 = performance.now();
    await new Promise((r) => setTimeout(r, sampleMs));
    const b = await this.currentLsn();
    const secs = (performance.now() - t0) / 1000;
    return Number(lsnDiff(b, a)) / secs;
  }

  async describe(ref: InstanceRef): Promise<InstanceDescription> {
    const base = await this.run(async (c) => {
      const v = await c.query<{ num: string; size: string; rec: boolean; lsn: string }>(
        `select current_setting('server_version_num') as num,
                (select sum(pg_database_size(oid)) from pg_database)::text as size,
                pg_is_in_recovery() as rec,
                (case when pg_is_in_recovery() then pg_last_wal_replay_lsn() else pg_current_wal_lsn() end)::text as lsn`,
      );
      const dbs = await c.query<{ datname: string }>(
        "select datname from pg_database where datallowconn and not datistemplate order by datname",
      );
      const settings = await c.query<{ name: string; setting: string }>("select name, setting from pg_settings");
      const slots = await c.query<{
        slot_name: string;
        slot_type: string;
        plugin: string | null;
        database: string | null;
        active: boolean;
        restart_lsn: string | null;
        confirmed_flush_lsn: string | null;
        retained: string | null;
      }>(
        `select slot_name, slot_type, plugin, database, active, restart_lsn::text, confirmed_flush_lsn::text,
                pg_wal_lsn_diff(case when pg_is_in_recovery() then pg_last_wal_replay_lsn() else pg_current_wal_lsn() end, restart_lsn)::bigint::text as retained
           from pg_replication_slots order by slot_name`,
      );
      return { v: v.rows[0]!, dbs: dbs.rows.map((r) => r.datname), settings: settings.rows, slots: slots.rows };
    });
    const extensions: InstanceDescription["extensions"] = [];
    for (const db of base.dbs) {
      const rows = await this.run(
        async (c) =>
          (
            await c.query<{ extname: string; extversion: string }>(
              "select extname, extversion from pg_extension order by extname",
            )
          ).rows,
        db,
      );
      for (const r of rows) extensions.push({ name: r.extname, version: r.extversion, database: db });
    }
    const versionNum = Number(base.v.num);
    return {
      ref,
      versionNum,
      major: Math.floor(versionNum / 10000),
      sizeBytes: BigInt(base.v.size),
      databases: base.dbs,
      settings: Object.fromEntries(base.settings.map((s) => [s.name, s.setting])),
      extensions,
      slots: base.slots.map((s): SlotInfo => ({
        name: s.slot_name,
        type: s.slot_type === "logical" ? "logical" : "physical",
        plugin: s.plugin,
        database: s.database,
        active: s.active,
        restartLsn: s.restart_lsn,
        confirmedFlushLsn: s.confirmed_flush_lsn,
        retainedBytes: BigInt(s.retained ?? "0"),
      })),
      inRecovery: base.v.rec,
      currentLsn: base.v.lsn,
    };
  }
}
