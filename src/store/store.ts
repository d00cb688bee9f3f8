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
  const rows = await cluster.query("select 1 from pg_database where datname = $1", [STORE_DB]);
  if (rows.length === 0) {
    try {
      await cluster.query(`create database ${STORE_DB}`);
    } catch (e) {
      // Another replica created it first.
      if ((e as { code?: string }).code !== "42P04") throw e;
    }
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
    await ensureDatabase(embedded);
    connection = embedded.connectionConfig(STORE_DB);
  }
  const pool = new pg.Pool({ ...connection, max: 10, application_name: "pgshift" });
  // An idle client that loses its server must not crash the process.
  pool.on("error", () => {});
  try {
    const c = await pool.connect();
    c.release();
  } catch (e) {
    await pool.end();
    throw new UnavailableError(
      `cannot reach the state store${opts.databaseUrl ? " at DATABASE_URL" : ""}: ${(e as Error).message}; check that the server runs and the credentials are right`,
      { cause: e },
    );
  }
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  const migrator = new Migrator({ db, provider: schemaMigrations });
  const { error } = await migrator.migrateToLatest();
  if (error) {
    await db.destroy();
    throw new UnavailableError(`state store schema migration failed: ${(error as Error).message}`, { cause: error });
  }
  // Leases are renewed on connections of their own: a burst of API watches on the main pool must never cost a driver its lease.
  const leasePool = new pg.Pool({ ...connection, max: 2, application_name: "pgshift-leases" });
  leasePool.on("error", () => {});
  const leaseDb = new Kysely<Database>({ dialect: new PostgresDialect({ pool: leasePool }) });
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
