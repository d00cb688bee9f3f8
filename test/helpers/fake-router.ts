import { FailedPreconditionError } from "../../src/domain/errors.js";
import type { Endpoint } from "../../src/domain/instance.js";
import type { ProxyRouteStatus, Route, Router } from "../../src/routing/router.js";

/**
 * An in-memory Router: a route per database whose version moves with its
 * endpoint, as the store's does. `nack` makes the next route change fail as
 * a proxy's NACK would (unless the caller tolerates NACKs).
 */
export class FakeRouter implements Router {
  readonly routes = new Map<string, Route>();
  readonly changes: Array<{ databaseName: string; endpoint: Endpoint; tolerateNack: boolean }> = [];
  nack: string | undefined;
  /** What proxies() answers. */
  proxyStatus: ProxyRouteStatus[] = [];

  async proxies(): Promise<ProxyRouteStatus[]> {
    return this.proxyStatus;
  }

  async current(databaseName: string): Promise<Route | undefined> {
    return this.routes.get(databaseName);
  }

  async route(
    databaseName: string,
    endpoint: Endpoint,
    _deadlineMs: number,
    opts: { tolerateNack?: boolean } = {},
  ): Promise<Route> {
    const prev = this.routes.get(databaseName);
    if (prev && prev.endpoint.host === endpoint.host && prev.endpoint.port === endpoint.port) return prev;
    const route: Route = {
      databaseName,
      endpoint,
      version: String(Number(prev?.version ?? 0) + 1),
      listenerPort: 15432,
    };
    this.routes.set(databaseName, route);
    this.changes.push({ databaseName, endpoint, tolerateNack: !!opts.tolerateNack });
    if (this.nack && !opts.tolerateNack)
      throw new FailedPreconditionError(`sidecar-1 rejected version ${route.version}: ${this.nack}`);
    return route;
  }
}
