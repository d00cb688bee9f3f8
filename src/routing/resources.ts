import { isIP } from "node:net";
import { envoyRoot } from "../../xds/index.js";
import type { Route } from "./router.js";

const root = envoyRoot([
  "envoy/config/listener/v3/listener.proto",
  "envoy/config/cluster/v3/cluster.proto",
  "envoy/extensions/filters/network/tcp_proxy/v3/tcp_proxy.proto",
]);
const Listener = root.lookupType("envoy.config.listener.v3.Listener");
const Cluster = root.lookupType("envoy.config.cluster.v3.Cluster");
const TcpProxy = root.lookupType("envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy");

export const TCP_PROXY_FILTER = "envoy.filters.network.tcp_proxy";

/** Names: the listener and the cluster both take the database's name. */
export const clusterName = (db: string) => db;
export const listenerName = (db: string) => db;

/**
 * The database's cluster. RDS and Aurora endpoints are DNS names whose address
 * changes on failover, so a name becomes a LOGICAL_DNS cluster (Envoy resolves
 * it for new connections, as its docs advise for a single upstream name);
 * an IP literal becomes a STATIC cluster. Either way the endpoint travels in
 * CDS itself: no EDS, so one resource carries a switch.
 */
export function clusterResource(route: Route): Uint8Array {
  const name = clusterName(route.databaseName);
  const dns = isIP(route.endpoint.host) === 0;
  return Cluster.encode(
    Cluster.fromObject({
      name,
      type: dns ? "LOGICAL_DNS" : "STATIC",
      ...(dns ? { dns_lookup_family: "V4_ONLY" } : {}),
      connect_timeout: { seconds: 5 },
      load_assignment: {
        cluster_name: name,
        endpoints: [
          {
            lb_endpoints: [
              {
                endpoint: {
                  address: { socket_address: { address: route.endpoint.host, port_value: route.endpoint.port } },
                },
              },
            ],
          },
        ],
      },
    }),
  ).finish();
}

/** The sidecar's listener for the database: a TCP proxy to its cluster. */
export function listenerResource(route: Route): Uint8Array {
  const name = listenerName(route.databaseName);
  const tcp = TcpProxy.encode(
    TcpProxy.fromObject({ stat_prefix: name, cluster: clusterName(route.databaseName) }),
  ).finish();
  return Listener.encode(
    Listener.fromObject({
      name,
      address: { socket_address: { address: "127.0.0.1", port_value: route.listenerPort } },
      filter_chains: [
        {
          filters: [
            {
              name: TCP_PROXY_FILTER,
              typed_config: { type_url: `type.googleapis.com/${TcpProxy.fullName.slice(1)}`, value: tcp },
            },
          ],
        },
      ],
    }),
  ).finish();
}

export { root as envoyTypes };
