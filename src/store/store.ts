import { join } from "node:path";
import { Kysely, Migrator, PostgresDialect } from "kysely";
import pg from "pg";
import { UnavailableError } from "../domain/errors.js";
import { LocalCluster } from "../postgres/cluster.js";
import type { Database } from "./schema.js";
import { schemaMigrations } from "./schema-migrations.js";

// bigint (int8) columns carry sequence numbers and tokens: keep them exact as strings.
pg.types.setTypeParser(20, (v) => v);

export interface StoreOptions {
  /** A PostgreSQL URL; without one the store runs its own cluster under dataDir. */
  databaseUrl?: string;
  dataDir: string;
}

export interface Store {
  db: Kysely<Database>;
  /** For leases alone (acquire, renew, release): a pool the API cannot exhaust. */
  leaseDb: Kysely<Database>;
  pool: pg.Pool;
  /** Connection settings, for the LISTEN connection. */
  connection: pg.ClientConfig;
  /** Set when the store runs its own cluster. */
  embedded?: LocalCluster;
  close(): Promise<void>;
}

const STORE_DB = "pgshift";

async function ensureDatabase(cluster: LocalCluster): Promise<void> {
  try {
    await cluster.query(`create database ${STORE_DB}`);
  } catch (e) {
    // Another replica created it first.
    if ((e as { code?: string }).code !== "42P04") throw e;
  }
}

/** Opens one connection of the pool and gives it back: the pool keeps it for the next query. */
async function connectOnce(pool: pg.Pool): Promise<void> {
  (await pool.connect()).release();
}

/**
 * Whether every migration of ours is recorded as applied, and nothing else: then the migrator (a lock table and a
 * dozen statements) has nothing to do. Anything else (a first start, a newer or older schema) goes through it.
 */
async function schemaCurrent(pool: pg.Pool): Promise<boolean> {
  try {
    const { rows } = await pool.query<{ name: string }>("select name from kysely_migration");
    const ours = Object.keys(await schemaMigrations.getMigrations());
    return rows.length === ours.length && ours.every((n) => rows.some((r) => r.name === n));
  } catch (e) {
    if ((e as { code?: string }).code === "42P01") return false;
    throw e;
  }
}

/** Opens the state store and brings our schema up to date. */
export async function openStore(opts: StoreOptions): Promise<Store> {
  let embedded: LocalCluster | undefined;
  let connection: pg.ClientConfig;
  if (opts.databaseUrl) {
    connection = { connectionString: opts.databaseUrl };
  } else {
    embedded = await LocalCluster.init({ dir: join(opts.dataDir, "store") });
    await embedded.start();
    connection = embedded.connectionConfig(STORE_DB);
  }
  const pool = new pg.Pool({ ...connection, max: 10, application_name: "pgshift" });
  // A client that loses its server must not crash the process: idle ones report to the pool, and checked-out ones
  // (inside a transaction, between its statements) have no listener of the pool's; their next statement fails instead.
  pool.on("error", () => {});
  pool.on("connect", (client) => client.on("error", () => {}));
  // Leases are renewed on connections of their own: a burst of API watches on the main pool must never cost a driver its lease.
  const leasePool = new pg.Pool({ ...connection, max: 2, application_name: "pgshift-leases" });
  leasePool.on("error", () => {});
  leasePool.on("connect", (client) => client.on("error", () => {}));
  // Each first connection is a backend started and an authentication exchange: both pools open theirs at once, since a
  // replica restarted inside a cutover's fenced window needs both before it drives. A lease connection that fails
  // here is opened again when a lease is first taken.
  const leaseReady = connectOnce(leasePool).catch(() => {});
  try {
    await connectOnce(pool).catch(async (e: unknown) => {
      // The embedded store's first start: its database is made on first use.
      if (!embedded || (e as { code?: string }).code !== "3D000") throw e;
      await ensureDatabase(embedded);
      await connectOnce(pool);
    });
  } catch (e) {
    await leaseReady;
    await Promise.all([pool.end(), leasePool.end()]);
    throw new UnavailableError(
      `cannot reach the state store${opts.databaseUrl ? " at DATABASE_URL" : ""}: ${(e as Error).message}; check that the server runs and the credentials are right`,
      { cause: e },
    );
  }
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  const leaseDb = new Kysely<Database>({ dialect: new PostgresDialect({ pool: leasePool }) });
  if (!(await schemaCurrent(pool))) {
    const { error } = await new Migrator({ db, provider: schemaMigrations }).migrateToLatest();
    if (error) {
      await leaseReady;
      await Promise.all([db.destroy(), leaseDb.destroy()]);
      throw new UnavailableError(`state store schema migration failed: ${(error as Error).message}`, { cause: error });
    }
  }
  await leaseReady;
  return {
    db,
    leaseDb,
    pool,
    connection,
    embedded,
    async close() {
      await leaseDb.destroy();
      await db.destroy();
      // The embedded cluster is left running on purpose only when asked; by default we stop it with us.
      if (embedded) await embedded.stop("fast");
    },
  };
}
