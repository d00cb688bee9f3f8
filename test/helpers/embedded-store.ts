import { readFileSync } from "node:fs";
import { join } from "node:path";
import pg from "pg";

/** The connection URL of the state store a service runs under its data dir (when given no --database-url). */
export function storeUrl(dataDir: string): string {
  const meta = JSON.parse(readFileSync(join(dataDir, "store", "cluster.json"), "utf8"));
  return `postgres://postgres:${meta.password}@127.0.0.1:${meta.port}/pgshift`;
}

/** A client of that store, not yet connected. */
export function storeClient(dataDir: string): pg.Client {
  return new pg.Client({ connectionString: storeUrl(dataDir) });
}

/** Stores routes as PREFLIGHT would, and announces them as a replica does, for a service that runs no engine. */
export async function publishRoutes(
  dataDir: string,
  routes: Array<{ db: string; port: number; listenerPort: number }>,
): Promise<void> {
  const c = storeClient(dataDir);
  await c.connect();
  try {
    for (const r of routes) {
      await c.query(
        `insert into routes (database_name, host, port, version, listener_port) values ($1, '127.0.0.1', $2, 1, $3)`,
        [r.db, r.port, r.listenerPort],
      );
    }
    await c.query(`select pg_notify('pgshift_routes', '')`);
  } finally {
    await c.end();
  }
}
