import { sql, type Kysely } from "kysely";
import type { Endpoint } from "../providers/provider.js";
import type { Database } from "../store/schema.js";

export interface Route {
  databaseName: string;
  endpoint: Endpoint;
  version: string;
}

/**
 * Where each logical database's traffic goes. The xDS server serves what is
 * stored here to the proxies; `route` returns once every connected proxy for
 * the database acknowledged the new version.
 */
export interface Router {
  current(databaseName: string): Promise<Route | undefined>;
  /** Points the database at the endpoint (idempotent: the same endpoint keeps its version) and waits for the proxies. */
  route(databaseName: string, endpoint: Endpoint, deadlineMs: number): Promise<Route>;
}

/** Routes kept in the state store, so that every replica of the service serves the same view. */
export class StoreRoutes {
  constructor(private readonly db: Kysely<Database>) {}

  async get(databaseName: string): Promise<Route | undefined> {
    const r = await this.db.selectFrom("routes").selectAll().where("database_name", "=", databaseName).executeTakeFirst();
    return r ? { databaseName, endpoint: { host: r.host, port: r.port }, version: r.version } : undefined;
  }

  async all(): Promise<Route[]> {
    const rows = await this.db.selectFrom("routes").selectAll().orderBy("database_name").execute();
    return rows.map((r) => ({ databaseName: r.database_name, endpoint: { host: r.host, port: r.port }, version: r.version }));
  }

  /** Sets the endpoint; the version moves only when the endpoint changes. */
  async set(databaseName: string, endpoint: Endpoint): Promise<Route> {
    const r = await sql<{ version: string }>`
      insert into routes (database_name, host, port, version) values (${databaseName}, ${endpoint.host}, ${endpoint.port}, 1)
      on conflict (database_name) do update
        set host = excluded.host, port = excluded.port, version = routes.version + 1, updated_at = now()
        where routes.host <> excluded.host or routes.port <> excluded.port
      returning version`.execute(this.db);
    if (r.rows[0]) return { databaseName, endpoint, version: r.rows[0].version };
    return (await this.get(databaseName))!;
  }
}

/**
 * A router that records routes in the store. It has no proxies of its own to
 * wait for; the xDS server wraps it to wait for every connected proxy's ACK.
 */
export class StoreRouter implements Router {
  constructor(private readonly routes: StoreRoutes) {}

  current(databaseName: string): Promise<Route | undefined> {
    return this.routes.get(databaseName);
  }

  route(databaseName: string, endpoint: Endpoint): Promise<Route> {
    return this.routes.set(databaseName, endpoint);
  }
}
