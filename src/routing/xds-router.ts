import { sql, type Kysely } from "kysely";
import { DeadlineExceededError, FailedPreconditionError } from "../domain/errors.js";
import type { Endpoint } from "../domain/instance.js";
import type { Database } from "../store/schema.js";
import { PROXY_STALE_MS } from "./proxy-liveness.js";
import type { ProxyRouteStatus, Route, RouteOptions, Router, StoreRoutes } from "./router.js";

/**
 * The router of the data access layer: a change is stored (every replica's
 * xDS server pushes it), and counts as done only when every connected proxy
 * for the database has ACKed it. A NACK fails the change.
 */
export class XdsRouter implements Router {
  /** Waits of ROUTING for a proxy's answer, woken early when this process records one. */
  private readonly waiting = new Set<() => void>();

  constructor(
    private readonly db: Kysely<Database>,
    private readonly routes: StoreRoutes,
  ) {}

  /**
   * A proxy's ACK or NACK was just recorded (by this process's xDS server): a waiting ROUTING looks at once instead
   * of at its next poll. Answers recorded by other replicas are seen at the poll.
   */
  answered(): void {
    for (const wake of [...this.waiting]) wake();
  }

  /** Resolves after ms, or sooner when a proxy's answer is recorded here. */
  private nextLook(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.waiting.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.waiting.add(done);
    });
  }

  current(databaseName: string): Promise<Route | undefined> {
    return this.routes.get(databaseName);
  }

  /** `version`: the route's current version when the caller knows it (ROUTING's wait loop), sparing a query. */
  async proxies(databaseName: string, version?: string): Promise<ProxyRouteStatus[]> {
    const rows = await this.db
      .selectFrom("proxy_status")
      .select(["identity", "node_id", "acked_version", "nacked_version", "nack_message", "last_seen"])
      .select(sql<boolean>`connected and last_seen > now() - ${`${PROXY_STALE_MS} milliseconds`}::interval`.as("live"))
      .where("database_name", "=", databaseName)
      .orderBy("node_id")
      .orderBy("identity")
      .execute();
    const current = version ?? (await this.routes.get(databaseName))?.version;
    return rows.map((r) => ({
      identity: r.identity,
      nodeId: r.node_id,
      connected: r.live,
      ackedVersion: r.acked_version,
      nackedVersion: r.nacked_version,
      nackMessage: r.nack_message,
      lastSeen: r.last_seen,
      behind: current !== undefined && (r.acked_version === null || BigInt(r.acked_version) < BigInt(current)),
    }));
  }

  /** Per database, how many known proxies have not applied its current route version (for the metric). */
  async behindCounts(): Promise<Map<string, number>> {
    const r = await sql<{ database_name: string; n: number }>`
      select r.database_name, count(p.node_id)::int as n
        from routes r left join proxy_status p
          on p.database_name = r.database_name and (p.acked_version is null or p.acked_version < r.version::bigint)
       group by r.database_name`.execute(this.db);
    return new Map(r.rows.map((x) => [x.database_name, x.n]));
  }

  async route(databaseName: string, endpoint: Endpoint, deadlineMs: number, opts: RouteOptions = {}): Promise<Route> {
    const part = opts.trace ?? (<T>(_name: string, fn: () => Promise<T>) => fn());
    const route = await part("route", () => this.routes.set(databaseName, endpoint));
    const want = BigInt(route.version);
    const deadline = Date.now() + deadlineMs;
    return part("ack", async () => {
      while (true) {
        const live = (await this.proxies(databaseName, route.version)).filter((p) => p.connected);
        const nacked = (p: ProxyRouteStatus) => p.nackedVersion !== null && BigInt(p.nackedVersion) >= want;
        const rejected = live.find(nacked);
        if (rejected && !opts.tolerateNack) {
          throw new FailedPreconditionError(
            `proxy ${rejected.nodeId} rejected route version ${route.version} of ${databaseName}: ${rejected.nackMessage}`,
          );
        }
        const waiting = live.filter((p) => !nacked(p) && (p.ackedVersion === null || BigInt(p.ackedVersion) < want));
        if (waiting.length === 0) return route;
        if (Date.now() > deadline) {
          throw new DeadlineExceededError(
            `route version ${route.version} of ${databaseName} was not ACKed within ${deadlineMs} ms by ${waiting.map((p) => p.nodeId).join(", ")}`,
          );
        }
        await this.nextLook(25);
      }
    });
  }
}
