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
    // The API published on the host's loopback only, never on 0.0.0.0.
    expect(compose.services.pgshift.ports).toEqual(["127.0.0.1::50051"]);
    // The image is built from the Dockerfile, not a stock image running npm ci at start.
    expect(compose.services.pgshift.build).toBe(".");
    expect(compose.services.pgshift.image).toBeUndefined();
    expect(compose.services.pgshift.command[0]).toBe("serve");
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

  it("the Dockerfile: multi-stage, the built bundle run by plain node as a non-root user, no dev dependencies, a gRPC health check", () => {
    const lines = readFileSync(join(ROOT, "Dockerfile"), "utf8")
      .replace(/\\\n/g, " ")
      .split("\n")
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith("#"));
    const stages: string[][] = [];
    for (const l of lines) {
      if (/^FROM /i.test(l)) stages.push([]);
      stages.at(-1)?.push(l);
    }
    expect(stages.length).toBeGreaterThanOrEqual(2);
    const build = stages[0]!;
    const final = stages.at(-1)!;
    expect(build.some((l) => /^RUN npm run build/.test(l))).toBe(true);
    // The runtime stage installs production dependencies only and takes the bundle from the build stage.
    const installs = final.filter((l) => /npm (ci|install)/.test(l));
    expect(installs.length).toBe(1);
    expect(installs[0]).toContain("--omit=dev");
    expect(final.filter((l) => l.startsWith("COPY --from=")).join(" ")).toContain("dist/pgshift.mjs");
    const user = final.filter((l) => l.startsWith("USER ")).at(-1);
    expect(user).toBeDefined();
    expect(user).not.toMatch(/^USER (root|0)(:|$)/);
    const health = final.find((l) => l.startsWith("HEALTHCHECK "));
    expect(health).toMatch(/CMD \["node", "dist\/pgshift\.mjs", "health"/);
    expect(final.find((l) => l.startsWith("ENTRYPOINT "))).toContain('"dist/pgshift.mjs"');
    // No TypeScript loader at run time.
    expect(final.join("\n")).not.toMatch(/tsx|src\/cli\/main\.ts/);
    // What the runtime stage copies from the build is what the package ships.
    const files = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")).files as string[];
    expect(files).toEqual(expect.arrayContaining(["dist/pgshift.mjs", "dist/chunks/"]));
    expect(JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")).bin.pgshift).toBe("./dist/pgshift.mjs");
  });
});
