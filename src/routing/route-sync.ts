import { TYPE, type ResourceCache } from "../../xds/index.js";
import type { EventBus } from "../store/event-bus.js";
import type { Logger } from "../telemetry/log.js";
import { clusterName, clusterResource, listenerName, listenerResource } from "./resources.js";
import type { Route, StoreRoutes } from "./router.js";

/** For each database, the route now in the cache and the cache versions that carry it. */
export interface Published {
  route: Route;
  clusterVersion: number;
  listenerVersion: number;
}

/**
 * Keeps the xDS cache equal to the routes in the store: loads them at start,
 * then follows every change any replica makes (the event bus's route
 * notifications, on the connection it already holds), with a periodic re-read
 * in case a notification was lost.
 */
export class RouteSync {
  readonly published = new Map<string, Published>();
  private unsubscribe: (() => void) | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly routes: StoreRoutes,
    private readonly cache: ResourceCache,
    private readonly bus: EventBus,
    private readonly log: Logger,
  ) {}

  async start(): Promise<void> {
    // Subscribed before the first read: a change made meanwhile is read again, never missed.
    this.unsubscribe = this.bus.subscribeRoutes(
      () => void this.reload().catch((e: unknown) => this.log.warn("route reload failed", { error: String(e) })),
    );
    await this.reload();
    this.timer = setInterval(() => void this.reload().catch(() => {}), 5_000);
  }

  /** Publishes every route that changed; the cache ignores what did not. */
  async reload(): Promise<void> {
    for (const route of await this.routes.all()) this.publish(route);
  }

  publish(route: Route): void {
    const prev = this.published.get(route.databaseName);
    if (prev && BigInt(prev.route.version) > BigInt(route.version)) return;
    // Cluster first, then the listener that uses it: make before break.
    this.cache.set(TYPE.cluster, [{ name: clusterName(route.databaseName), value: clusterResource(route) }]);
    this.cache.set(TYPE.listener, [{ name: listenerName(route.databaseName), value: listenerResource(route) }]);
    this.published.set(route.databaseName, {
      route,
      clusterVersion: this.cache.get(TYPE.cluster, clusterName(route.databaseName))!.version,
      listenerVersion: this.cache.get(TYPE.listener, listenerName(route.databaseName))!.version,
    });
  }

  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.unsubscribe?.();
  }
}
