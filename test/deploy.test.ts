import { existsSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";

const ROOT = resolve(import.meta.dirname, "..");

describe("deployment files (no Docker engine here: parsed and checked, not run)", () => {
  const compose = parse(readFileSync(join(ROOT, "docker-compose.yml"), "utf8"));

  it("docker-compose wires the service to an external store and an Envoy sidecar to the service's xDS port", () => {
    expect(Object.keys(compose.services).sort()).toEqual(["envoy", "pgshift", "store"]);
    expect(compose.services.pgshift.environment.DATABASE_URL).toMatch(/@store:5432\//);
    // Several replicas behind one name: no fixed host port, the xDS port on the compose network.
    expect(compose.services.pgshift.deploy.replicas).toBeGreaterThanOrEqual(2);
    expect(compose.services.pgshift.expose).toContain("18000");
    expect(compose.services.pgshift.ports).toEqual(["50051"]);
    for (const v of compose.services.envoy.volumes as string[]) expect(existsSync(join(ROOT, v.split(":")[0]!))).toBe(true);
  });

  it("the Envoy bootstrap takes LDS and CDS over ADS from pgshift on the xDS port", () => {
    const boot = parse(readFileSync(join(ROOT, "deploy/envoy/bootstrap.yaml"), "utf8"));
    expect(boot.dynamic_resources.ads_config.api_type).toBe("GRPC");
    expect(boot.dynamic_resources.cds_config.ads).toEqual({});
    expect(boot.dynamic_resources.lds_config.ads).toEqual({});
    const xds = boot.static_resources.clusters.find((c: any) => c.name === boot.dynamic_resources.ads_config.grpc_services[0].envoy_grpc.cluster_name);
    expect(xds.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.port_value).toBe(18000);
    // STRICT_DNS over the replicas' name, and a short reconnect backoff so a sidecar moves on when its replica dies.
    expect(xds.type).toBe("STRICT_DNS");
    expect(xds.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.address).toBe(compose.services.pgshift ? "pgshift" : "");
    expect(boot.dynamic_resources.ads_config.grpc_services[0].envoy_grpc.retry_policy.retry_back_off.max_interval).toBe("1s");
  });
});
