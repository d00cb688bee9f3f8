import { existsSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { parsePolicy } from "../src/security/policy-file.js";
import { envoyBootstrapRoot, strictEnvoyDecode } from "./helpers/envoy-strict.js";

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
    // Every file mounted is in the repository, but the certificates `pgshift dev-certs --out deploy/tls` makes (never committed).
    for (const v of [...compose.services.envoy.volumes, ...compose.services.pgshift.volumes] as string[]) {
      const src = v.split(":")[0]!;
      if (src !== "./deploy/tls") expect(existsSync(join(ROOT, src)), src).toBe(true);
    }
    // Mutual TLS: the service's certificates and policy mounted, the sidecar's node id its certificate's identity.
    expect(compose.services.pgshift.volumes).toEqual(
      expect.arrayContaining(["./deploy/tls:/etc/pgshift/tls:ro", "./deploy/policy.yaml:/etc/pgshift/policy.yaml:ro"]),
    );
    expect(compose.services.pgshift.command).not.toContain("--insecure");
    expect(compose.services.envoy.command.join(" ")).toContain("--service-node spiffe://pgshift.local/sa/app-sidecar#");
  });

  it("the Envoy bootstrap takes LDS and CDS over ADS from pgshift on the xDS port", () => {
    const boot = parse(readFileSync(join(ROOT, "deploy/envoy/bootstrap.yaml"), "utf8"));
    expect(boot.dynamic_resources.ads_config.api_type).toBe("GRPC");
    expect(boot.dynamic_resources.cds_config.ads).toEqual({});
    expect(boot.dynamic_resources.lds_config.ads).toEqual({});
    const xds = boot.static_resources.clusters.find(
      (c: any) => c.name === boot.dynamic_resources.ads_config.grpc_services[0].envoy_grpc.cluster_name,
    );
    expect(xds.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.port_value).toBe(18000);
    // STRICT_DNS over the replicas' name, and a short reconnect backoff so a sidecar moves on when its replica dies.
    expect(xds.type).toBe("STRICT_DNS");
    expect(xds.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.address).toBe(
      compose.services.pgshift ? "pgshift" : "",
    );
    expect(boot.dynamic_resources.ads_config.grpc_services[0].envoy_grpc.retry_policy.retry_back_off.max_interval).toBe(
      "1s",
    );
  });

  it("the Envoy bootstrap decodes strictly into envoy.config.bootstrap.v3.Bootstrap, with mutual TLS to the control plane", () => {
    const root = envoyBootstrapRoot();
    const BOOTSTRAP = "envoy.config.bootstrap.v3.Bootstrap";
    const raw = parse(readFileSync(join(ROOT, "deploy/envoy/bootstrap.yaml"), "utf8"));
    const boot = strictEnvoyDecode(root, BOOTSTRAP, raw).toJSON() as any;
    const xds = boot.static_resources.clusters.find((c: any) => c.name === "pgshift_xds");
    const socket = xds.transport_socket;
    expect(socket.name).toBe("envoy.transport_sockets.tls");
    expect(socket.typed_config.type_url ?? socket.typed_config["@type"]).toContain("UpstreamTlsContext");
    const { "@type": _, ...upstream } = raw.static_resources.clusters[0].transport_socket.typed_config;
    const tls = strictEnvoyDecode(
      root,
      "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
      upstream,
    ).toJSON() as any;
    expect(tls.common_tls_context.tls_certificates[0].certificate_chain.filename).toMatch(/\.crt$/);
    expect(tls.common_tls_context.tls_certificates[0].private_key.filename).toMatch(/\.key$/);
    expect(tls.common_tls_context.validation_context.trusted_ca.filename).toMatch(/ca\.crt$/);
    // The node id is an identity the policy's proxies section can grant.
    expect(boot.node.id).toMatch(/^spiffe:\/\/pgshift\.local\/sa\/app-sidecar#/);
    const policy = parsePolicy(readFileSync(join(ROOT, "deploy/policy.yaml"), "utf8"), "deploy/policy.yaml");
    expect(policy.proxyMayReach("spiffe://pgshift.local/sa/app-sidecar", "billing-db")).toBe(true);
    // The decoder is strict: a misspelt field, a wrong type and an unknown Any fail, naming where.
    const mutate = (f: (b: any) => void) => {
      const b = structuredClone(raw);
      f(b);
      return () => strictEnvoyDecode(root, BOOTSTRAP, b);
    };
    expect(mutate((b) => (b.static_resources.clusters[0].conect_timeout = "2s"))).toThrow(
      /clusters\[0\]\.conect_timeout: unknown field/,
    );
    expect(mutate((b) => (b.static_resources.clusters[0].connect_timeout = 2))).toThrow(/duration/);
    expect(mutate((b) => (b.static_resources.clusters[0].type = "STRICT_DSN"))).toThrow(/one of/);
    expect(
      mutate(
        (b) => (b.static_resources.clusters[0].transport_socket.typed_config.common_tls_context.tls_certificate = []),
      ),
    ).toThrow(/unknown field/);
    expect(
      mutate(
        (b) =>
          (b.static_resources.clusters[0].transport_socket.typed_config["@type"] = "type.googleapis.com/envoy.Nope"),
      ),
    ).toThrow(/not among/);
  });

  it("the sample policy parses, and grants what its comments say", () => {
    const policy = parsePolicy(readFileSync(join(ROOT, "deploy/policy.yaml"), "utf8"), "deploy/policy.yaml");
    expect(policy.allows("spiffe://corp.example/platform/sa/oncall", "administer", "anything")).toBe(true);
    expect(policy.allows("spiffe://corp.example/team/billing/sa/deployer", "approve", "billing-db")).toBe(true);
    expect(policy.allows("spiffe://corp.example/team/billing/sa/deployer", "administer", "billing-db")).toBe(false);
    expect(policy.allows("spiffe://corp.example/team/billing/sa/deployer", "view", "payments-db")).toBe(false);
    expect(policy.allows("spiffe://corp.example/observability/sa/grafana", "view", "payments-db")).toBe(true);
    expect(policy.allows("spiffe://corp.example/observability/sa/grafana", "operate", "payments-db")).toBe(false);
  });

  it("the Dockerfile: multi-stage on a supported Node, the built bundle run by plain node as a non-root user, no node_modules, a gRPC health check", () => {
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
    // Both stages on a supported Node (22 or 24; 20 ended in April 2026).
    for (const stage of stages) expect(stage[0]).toMatch(/^FROM node:(22|24)[.-]/i);
    // The runtime stage installs no package (the bundle reads none at run time: test/package.test.ts runs it bare)
    // and takes the bundle, with its notices and SBOM, from the build stage.
    expect(final.filter((l) => /npm (ci|install)/.test(l))).toEqual([]);
    const copied = final.filter((l) => l.startsWith("COPY --from=")).join(" ");
    for (const f of ["dist/pgshift.mjs", "dist/THIRD-PARTY-NOTICES.md", "dist/sbom.cdx.json"])
      expect(copied).toContain(f);
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
    expect(files).toEqual(expect.arrayContaining(["dist/pgshift.mjs", "dist/chunks/", "dist/envoy-descriptors.json"]));
    // Envoy's descriptors, parsed at build: a restarted replica does not parse .proto files.
    expect(final.filter((l) => l.startsWith("COPY --from=")).join(" ")).toContain("dist/envoy-descriptors.json");
    expect(JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")).bin.pgshift).toBe("./dist/pgshift.mjs");
  });
});
