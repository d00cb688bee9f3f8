import type { HandlerContext } from "@connectrpc/connect";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { InvalidArgumentError, NotFoundError } from "../domain/errors.js";
import type { XdsRouter } from "../routing/xds-router.js";
import type { Authorizer } from "./authorize.js";

/** Where a database's route points now, at which version, and how far each proxy that serves it has come. */
export async function routingStatus(router: XdsRouter, authz: Authorizer, databaseName: string, ctx: HandlerContext) {
  if (!databaseName) throw new InvalidArgumentError("database_name is required: the logical database, e.g. billing-db");
  await authz.require(ctx, "view", databaseName, "read the routing status");
  const route = await router.current(databaseName);
  if (!route)
    throw new NotFoundError(`no route for database "${databaseName}"; a migration of it creates one at PREFLIGHT`);
  const proxies = await router.proxies(databaseName);
  return {
    status: {
      databaseName: route.databaseName,
      endpoint: route.endpoint,
      version: route.version,
      listenerPort: route.listenerPort,
      proxies: proxies.map((p) => ({
        identity: p.identity,
        nodeId: p.nodeId,
        connected: p.connected,
        ackedVersion: p.ackedVersion ?? "",
        nackedVersion: p.nackedVersion ?? "",
        nackMessage: p.nackMessage ?? "",
        lastSeen: timestampFromDate(p.lastSeen),
        behind: p.behind,
      })),
    },
  };
}
