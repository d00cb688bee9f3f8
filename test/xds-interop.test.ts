import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AdsServer, envoyRoot, listenXds, ResourceCache, TYPE, type XdsListener } from "../xds/index.js";
import { healthClient, unary } from "./helpers/grpc-clients.js";

/**
 * gRPC's own xDS client (@grpc/grpc-js-xds), strict about resources, against
 * our generic management server: it must resolve xds:///echo through LDS, RDS
 * (inline), CDS and EDS we serve, follow an endpoint switch, and its
 * rejections must show up as NACKs.
 */
const root = envoyRoot([
  "envoy/config/listener/v3/listener.proto",
  "envoy/config/cluster/v3/cluster.proto",
  "envoy/config/endpoint/v3/endpoint.proto",
  "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto",
  "envoy/extensions/filters/http/router/v3/router.proto",
]);
const enc = (type: string, obj: object) => {
  const t = root.lookupType(type);
  return t.encode(t.fromObject(obj)).finish();
};
const any = (type: string, obj: object) => ({ type_url: `type.googleapis.com/${type}`, value: enc(type, obj) });

function grpcListener(name: string, cluster: string) {
  return enc("envoy.config.listener.v3.Listener", {
    name,
    api_listener: {
      api_listener: any("envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager", {
        route_config: {
          name: `${name}-routes`,
          virtual_hosts: [{ name: "all", domains: ["*"], routes: [{ match: { prefix: "" }, route: { cluster } }] }],
        },
        http_filters: [{ name: "router", typed_config: any("envoy.extensions.filters.http.router.v3.Router", {}) }],
      }),
    },
  });
}

const edsCluster = (name: string) =>
  enc("envoy.config.cluster.v3.Cluster", {
    name,
    type: "EDS",
    eds_cluster_config: { eds_config: { ads: {} } },
    lb_policy: "ROUND_ROBIN",
  });

const assignment = (name: string, port: number) =>
  enc("envoy.config.endpoint.v3.ClusterLoadAssignment", {
    cluster_name: name,
    endpoints: [
      {
        locality: {},
        lb_endpoints: [
          {
            endpoint: { address: { socket_address: { address: "127.0.0.1", port_value: port } } },
            load_balancing_weight: { value: 1 },
          },
        ],
        load_balancing_weight: { value: 1 },
      },
    ],
  });

/** A backend that answers health checks with a status of its own, so the client can tell which one it reached. */
async function backend(status: "SERVING" | "NOT_SERVING"): Promise<{ port: number; server: grpc.Server }> {
  const { default: protoLoader } = await import("@grpc/proto-loader");
  const { createRequire } = await import("node:module");
  const { dirname, join } = await import("node:path");
  const require = createRequire(import.meta.url);
  const def = protoLoader.loadSync("health/v1/health.proto", {
    includeDirs: [join(dirname(require.resolve("grpc-health-check/package.json")), "proto")],
    enums: String,
  });
  const svc = (grpc.loadPackageDefinition(def) as any).grpc.health.v1.Health.service;
  const server = new grpc.Server();
  server.addService(svc, { Check: (_c: unknown, cb: (e: null, r: object) => void) => cb(null, { status }) });
  const port = await new Promise<number>((res, rej) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (e, p) => (e ? rej(e) : res(p))),
  );
  return { port, server };
}

describe("interop with gRPC's own xDS client", () => {
  const cache = new ResourceCache();
  const ads = new AdsServer(cache);
  let xds: XdsListener;
  let a: { port: number; server: grpc.Server };
  let b: { port: number; server: grpc.Server };

  beforeAll(async () => {
    xds = await listenXds(ads, "127.0.0.1", 0);
    a = await backend("SERVING");
    b = await backend("NOT_SERVING");
    process.env.GRPC_XDS_BOOTSTRAP_CONFIG = JSON.stringify({
      xds_servers: [
        { server_uri: `127.0.0.1:${xds.port}`, channel_creds: [{ type: "insecure" }], server_features: ["xds_v3"] },
      ],
      node: { id: "grpc-client-1", cluster: "interop", locality: {} },
    });
    const xdsClient = await import("@grpc/grpc-js-xds");
    xdsClient.register();
    cache.set(TYPE.cluster, [{ name: "echo-cluster", value: edsCluster("echo-cluster") }]);
    cache.set(TYPE.endpoint, [{ name: "echo-cluster", value: assignment("echo-cluster", a.port) }]);
    cache.set(TYPE.listener, [{ name: "echo", value: grpcListener("echo", "echo-cluster") }]);
  });

  afterAll(async () => {
    a?.server.forceShutdown();
    b?.server.forceShutdown();
    ads.close();
    await xds?.close();
  });

  it("resolves an xds:/// target through our LDS, CDS and EDS, and follows an endpoint switch we push", async () => {
    const client = healthClient("xds:///echo");
    expect((await unary(client, "Check", { service: "" })).status).toBe("SERVING");
    const node = ads.connected().find((s) => s.node.id === "grpc-client-1")!;
    expect(node).toBeDefined();
    const v = cache.set(TYPE.endpoint, [{ name: "echo-cluster", value: assignment("echo-cluster", b.port) }]);
    let status = "";
    for (let i = 0; i < 100 && status !== "NOT_SERVING"; i++) {
      status = (await unary(client, "Check", { service: "" })).status;
      if (status !== "NOT_SERVING") await new Promise((r) => setTimeout(r, 50));
    }
    expect(status).toBe("NOT_SERVING");
    // The client acknowledged the switch, per type, as the spec says.
    expect(ads.outcome(node.id, TYPE.endpoint, "echo-cluster", v)).toBe("acked");
    expect(ads.outcome(node.id, TYPE.listener, "echo", cache.get(TYPE.listener, "echo")!.version)).toBe("acked");
    client.close();
  });

  it("records a resource the client rejects as a NACK with its error", async () => {
    const client = healthClient("xds:///echo");
    await unary(client, "Check", { service: "" });
    const node = ads.connected().find((s) => s.node.id === "grpc-client-1")!;
    // A listener without api_listener cannot serve gRPC: the client must reject it.
    const bad = enc("envoy.config.listener.v3.Listener", {
      name: "echo",
      address: { socket_address: { address: "127.0.0.1", port_value: 1 } },
    });
    const v = cache.set(TYPE.listener, [{ name: "echo", value: bad }]);
    const nack = await new Promise<{ type: string; version: number; message: string }>((res) =>
      ads.on("nack", (s, type, version, message) => {
        if (s.node.id === "grpc-client-1" && type === TYPE.listener) res({ type, version, message });
      }),
    );
    expect(nack.version).toBe(v);
    expect(nack.message.length).toBeGreaterThan(0);
    expect(ads.outcome(node.id, TYPE.listener, "echo", v)).toBe("nacked");
    client.close();
  });
});
