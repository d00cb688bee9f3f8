import { sql, type Kysely } from "kysely";
import type { Endpoint } from "../domain/instance.js";
import type { Database } from "../store/schema.js";

export interface Route {
  databaseName: string;
  endpoint: Endpoint;
  /** Increases with every change of endpoint: the version proxies acknowledge. */
  version: string;
  /** Where every sidecar listens for this database. */
  listenerPort: number;
}

/** One proxy (sidecar) serving a database, as the store knows it. */
export interface ProxyRouteStatus {
  /** Its certificate's identity ("" over cleartext). */
  identity: string;
  nodeId: string;
  connected: boolean;
  ackedVersion: string | null;
  nackedVersion: string | null;
  nackMessage: string | null;
  lastSeen: Date;
  /** It has not applied the route's current version. */
  behind: boolean;
}

/**
 * Where each logical database's traffic goes. `route` returns once every
 * connected proxy for the database acknowledged the new version.
 */
export interface RouteOptions {
  /** With it, a proxy that rejects the change is not waited for instead of failing it. */
  tolerateNack?: boolean;
  /** Runs storing the route ("route") and waiting for the ACKs ("ack") as parts of the caller's trace. */
  trace?: <T>(name: string, fn: () => Promise<T>) => Promise<T>;
}

export interface Router {
  current(databaseName: string): Promise<Route | undefined>;
  /**
   * Points the database at the endpoint (idempotent: the same endpoint keeps
   * its version) and waits for the proxies. With tolerateNack, a proxy that
   * rejects the change is not waited for instead of failing it (rollback:
   * traffic must go back whatever one broken proxy says).
   */
  route(databaseName: string, endpoint: Endpoint, deadlineMs: number, opts?: RouteOptions): Promise<Route>;
  /** Every proxy known to serve the database: live or not, and whether it applied the current version. */
  proxies(databaseName: string): Promise<ProxyRouteStatus[]>;
}

const FIRST_LISTENER_PORT = 15432;

type RouteRow = { database_name: string; host: string; port: number; version: string; listener_port: number };
const toRoute = (r: RouteRow): Route => ({
  databaseName: r.database_name,
  endpoint: { host: r.host, port: r.port },
  version: r.version,
  listenerPort: r.listener_port,
});

/** Routes kept in the state store, so that every replica of the service serves the same view. */
export class StoreRoutes {
  constructor(private readonly db: Kysely<Database>) {}

  async get(databaseName: string): Promise<Route | undefined> {
    const r = await this.db
      .selectFrom("routes")
      .selectAll()
      .where("database_name", "=", databaseName)
      .executeTakeFirst();
    return r ? toRoute(r) : undefined;
  }

  async all(): Promise<Route[]> {
    return (await this.db.selectFrom("routes").selectAll().orderBy("database_name").execute()).map(toRoute);
  }

  /** Sets the endpoint; the version moves only when the endpoint changes. A new database gets the next free listener port. */
  async set(databaseName: string, endpoint: Endpoint): Promise<Route> {
    for (let attempt = 0; ; attempt++) {
      try {
        const r = await sql<RouteRow>`
          insert into routes (database_name, host, port, version, listener_port)
          values (${databaseName}, ${endpoint.host}, ${endpoint.port}, 1,
                  coalesce((select max(listener_port) + 1 from routes), ${FIRST_LISTENER_PORT}))
          on conflict (database_name) do update
            set host = excluded.host, port = excluded.port, version = routes.version + 1, updated_at = now()
            where routes.host <> excluded.host or routes.port <> excluded.port
          returning database_name, host, port, version, listener_port`.execute(this.db);
        if (r.rows[0]) return toRoute(r.rows[0]);
        return (await this.get(databaseName))!;
      } catch (e) {
        // Two replicas took the same new listener port at once: take the next.
        if ((e as { constraint?: string }).constraint === "routes_listener_port" && attempt < 5) continue;
        throw e;
      }
    }
  }
}
