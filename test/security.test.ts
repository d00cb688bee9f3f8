import { execFile } from "node:child_process";
import { readFileSync, renameSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { issueCertificate, makeDevPki, type DevPki } from "../src/security/dev-pki.js";
import { adsClientConstructor, TYPE } from "../xds/index.js";
import {
  healthClient,
  migrationClient,
  mtlsCredentials,
  unary,
  unaryError,
  type AnyClient,
} from "./helpers/grpc-clients.js";
import { createRegistered, localSpec, registerFor } from "./helpers/migrations.js";
import { publishRoutes } from "./helpers/embedded-store.js";
import { startServiceProcess, tempDir, type ServiceProcess } from "./helpers/service-process.js";

const run = promisify(execFile);
const BUNDLE = resolve(import.meta.dirname, "../dist/pgshift.mjs");

const ADMIN = "spiffe://test.example/platform/sa/admin";
const BILLING = "spiffe://test.example/team/billing/sa/deployer";
const BILLING_SIDECAR = "spiffe://test.example/team/billing/sa/sidecar";
const FLOOD = "spiffe://test.example/team/billing/sa/flood";
/** An identity that BILLING_SIDECAR's begins with: with "/" separating instances it could claim the sidecar's node id. */
const PREFIX = "spiffe://test.example/team/billing/sa";

const POLICY = `# who may do what
grants:
  - identities: ["${ADMIN}"]
    databases: ["**"]
    role: admin
  - identities: ["spiffe://test.example/team/billing/sa/*"]
    databases: ["billing-*"]
    role: approver
proxies:
  - identities: ["spiffe://test.example/team/billing/sa/*"]
    databases: ["billing-*"]
`;

const creds = mtlsCredentials;

/** A client certificate from the dev PKI's CA that names no identity: no SAN, and a subject without a CN. */
async function namelessCertificate(pkiDir: string): Promise<grpc.ChannelCredentials> {
  const ca = { cert: join(pkiDir, "ca.crt"), key: join(pkiDir, "ca.key") };
  const f = await issueCertificate(pkiDir, ca, "nameless", "/O=pgshift tests", [], "1");
  return grpc.credentials.createSsl(readFileSync(ca.cert), readFileSync(f.key), readFileSync(f.cert));
}

/** Atomically replaces a file, as certificate rotation tools do. */
function replace(path: string, contents: Buffer | string): void {
  writeFileSync(path + ".new", contents);
  renameSync(path + ".new", path);
}

describe("mutual TLS, identities and per-database authorization", () => {
  const tmp = tempDir("security");
  let pki: DevPki;
  let otherCa: DevPki;
  let svc: ServiceProcess;
  let admin: AnyClient;
  let billing: AnyClient;
  const files = { cert: "", key: "", ca: "", policy: "" };
  const ids: Record<string, string> = {};

  beforeAll(async () => {
    const clients = [
      { name: "admin", identity: ADMIN },
      { name: "billing", identity: BILLING },
      { name: "sidecar", identity: BILLING_SIDECAR },
      { name: "flood", identity: FLOOD },
      { name: "prefix", identity: PREFIX },
    ];
    pki = await makeDevPki(join(tmp.dir, "pki"), { serverNames: ["127.0.0.1", "localhost"], clients });
    otherCa = await makeDevPki(join(tmp.dir, "other"), { serverNames: ["127.0.0.1"], clients });
    // The service reads copies, so the rotation below can replace them.
    Object.assign(files, {
      cert: join(tmp.dir, "server.crt"),
      key: join(tmp.dir, "server.key"),
      ca: join(tmp.dir, "clients-ca.crt"),
      policy: join(tmp.dir, "policy.yaml"),
    });
    writeFileSync(files.cert, readFileSync(pki.server.cert));
    writeFileSync(files.key, readFileSync(pki.server.key));
    writeFileSync(files.ca, readFileSync(pki.ca));
    writeFileSync(files.policy, POLICY);
    svc = await startServiceProcess([
      ...["--data-dir", join(tmp.dir, "data"), "--engine", "off", "--reload-ms", "200"],
      ...["--tls-cert", files.cert, "--tls-key", files.key, "--tls-client-ca", files.ca, "--policy", files.policy],
    ]);
    admin = migrationClient(svc.address, creds(pki, "admin"));
    billing = migrationClient(svc.address, creds(pki, "billing"));
    for (const db of ["billing-db", "payments-db"]) {
      ids[db] = (await createRegistered(admin, localSpec(db, `${db}-src`, `${db}-tgt`), db.split("-")[0])).id;
    }
    await registerFor(admin, localSpec("billing-two", "b2-src", "b2-tgt"), "billing");
  }, 120_000);

  afterAll(async () => {
    admin?.close();
    billing?.close();
    await svc?.stop();
    tmp.remove();
  });

  it("refuses a client without a certificate, with one from another CA, or in cleartext", async () => {
    const health = (c: grpc.ChannelCredentials) => {
      const h = healthClient(svc.address, c);
      return unary(h, "Check", { service: "" }, new grpc.Metadata()).finally(() => h.close());
    };
    await expect(health(creds(pki, "admin"))).resolves.toMatchObject({ status: "SERVING" });
    for (const c of [
      grpc.credentials.createSsl(readFileSync(pki.ca)),
      creds(otherCa, "admin"),
      grpc.credentials.createInsecure(),
    ]) {
      await expect(health(c)).rejects.toMatchObject({ code: grpc.status.UNAVAILABLE });
    }
  });

  it("refuses a trusted certificate that names no identity: UNAUTHENTICATED on the API, never judged as the empty name", async () => {
    const nameless = await namelessCertificate(join(tmp.dir, "pki"));
    const client = migrationClient(svc.address, nameless);
    try {
      const err = await unaryError(client, "ListMigrations", {});
      expect(err.code).toBe(grpc.status.UNAUTHENTICATED);
      expect(err.details).toMatch(/names no identity/);
      expect((await unaryError(client, "GetMigration", { id: ids["billing-db"] })).code).toBe(
        grpc.status.UNAUTHENTICATED,
      );
    } finally {
      client.close();
    }
  });

  it("an identity allowed on billing-* is denied payments-db, by name, and does not see it in lists", async () => {
    const listed = (await unary(billing, "ListMigrations", {})).migrations.map((m: any) => m.spec.database_name);
    expect(listed).toEqual(["billing-db"]);
    expect((await unary(admin, "ListMigrations", {})).migrations).toHaveLength(2);
    for (const method of ["ApproveCutover", "RollbackMigration", "FinalizeMigration", "GetMigration"]) {
      const e = await unaryError(billing, method, { id: ids["payments-db"], reason: "" });
      expect(e.code, method).toBe(grpc.status.PERMISSION_DENIED);
      expect(e.details).toContain(BILLING);
      expect(e.details).toContain('"payments-db"');
    }
    const create = await unaryError(billing, "CreateMigration", {
      spec: localSpec("payments-two", "p2-src", "p2-tgt"),
    });
    expect(create.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(create.details).toMatch(
      /may not create a migration for database "payments-two" \(instance local:p2-src\): that needs role operator/,
    );
    // Its own database: an approver may approve (ahead of the phase, as any approval), not finalize.
    await expect(unary(billing, "ApproveCutover", { id: ids["billing-db"] })).resolves.toBeDefined();
    const fin = await unaryError(billing, "FinalizeMigration", { id: ids["billing-db"] });
    expect(fin.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(fin.details).toMatch(/needs role admin .* grants approver/);
  });

  it("the audit log names the certificate's identity; x-pgshift-actor only adds the stated human", async () => {
    const md = new grpc.Metadata();
    md.set("x-pgshift-actor", ADMIN);
    const m = (await unary(billing, "CreateMigration", { spec: localSpec("billing-two", "b2-src", "b2-tgt") }, md))
      .migration;
    expect(m.history[0].actor).toBe(`${BILLING} on behalf of ${ADMIN} (stated by the caller)`);
    const plain = (await unary(billing, "GetMigration", { id: ids["billing-db"] })).migration;
    expect(plain.history[0].actor).toBe(ADMIN);
  });

  it("the CLI speaks mutual TLS with --ca, --cert and --key", async () => {
    const c = pki.clients.billing!;
    const { stdout } = await run(process.execPath, [
      BUNDLE,
      "ctl",
      "list",
      "--api",
      `https://127.0.0.1:${svc.port}`,
      "--ca",
      pki.ca,
      "--cert",
      c.cert,
      "--key",
      c.key,
    ]);
    const dbs = JSON.parse(stdout).migrations.map((m: any) => m.spec.databaseName);
    expect(dbs.sort()).toEqual(["billing-db", "billing-two"]);
  });

  describe("xDS", () => {
    beforeAll(async () => {
      // Routes as PREFLIGHT would store them (this service runs no engine), announced as a replica does.
      await publishRoutes(join(tmp.dir, "data"), [
        { db: "billing-db", port: 5999, listenerPort: 16001 },
        { db: "payments-db", port: 5998, listenerPort: 16002 },
      ]);
    });

    function ads(credentials: grpc.ChannelCredentials) {
      const Ctor = adsClientConstructor();
      const client = new Ctor(`127.0.0.1:${svc.xdsPort}`, credentials) as any;
      const call = client.StreamAggregatedResources() as grpc.ClientDuplexStream<any, any>;
      call.on("error", () => {});
      return {
        call,
        first: () => new Promise<any>((res, rej) => (call.once("data", res), call.once("status", rej))),
        status: () => new Promise<grpc.StatusObject>((res) => call.once("status", res)),
        close: () => (call.cancel(), client.close()),
      };
    }

    it("a proxy sees only the listeners its identity may reach, and must use its own identity as node id", async () => {
      const { envoyTypes } = await import("../src/routing/resources.js");
      const Cluster = envoyTypes.lookupType("envoy.config.cluster.v3.Cluster");
      const seen = async () => {
        const s = ads(creds(pki, "sidecar"));
        s.call.write({ node: { id: `${BILLING_SIDECAR}#pod-1` }, type_url: TYPE.cluster, resource_names: [] });
        const r = await s.first();
        s.close();
        return (r.resources ?? []).map((x: any) => (Cluster.decode(x.value) as any).name);
      };
      // The routes reach the cache by NOTIFY: wait for them, then the payments cluster must still be missing.
      await expect.poll(seen, { timeout: 10_000, interval: 100 }).toContain("billing-db");
      expect(await seen()).toEqual(["billing-db"]);
      // Its ACK is kept under its certificate's identity and its node id together.
      const acking = ads(creds(pki, "sidecar"));
      acking.call.write({ node: { id: `${BILLING_SIDECAR}#pod-1` }, type_url: TYPE.cluster, resource_names: [] });
      const answer = await acking.first();
      acking.call.write({
        type_url: TYPE.cluster,
        resource_names: [],
        version_info: answer.version_info,
        response_nonce: answer.nonce,
      });
      await expect
        .poll(
          async () =>
            (await unary(admin, "GetRoutingStatus", { database_name: "billing-db" })).status.proxies.map((p: any) => [
              p.identity,
              p.node_id,
            ]),
          {
            timeout: 10_000,
            interval: 100,
          },
        )
        .toEqual([[BILLING_SIDECAR, `${BILLING_SIDECAR}#pod-1`]]);
      acking.close();

      const forged = ads(creds(pki, "sidecar"));
      forged.call.write({
        node: { id: "spiffe://test.example/team/payments/sa/sidecar" },
        type_url: TYPE.cluster,
        resource_names: [],
      });
      const st = await forged.status();
      expect(st.code).toBe(grpc.status.PERMISSION_DENIED);
      expect(st.details).toContain("does not belong to the certificate's identity");
      forged.close();

      // An identity that the sidecar's begins with cannot hold the sidecar's node id; nor can a nameless certificate hold any.
      const prefix = ads(creds(pki, "prefix"));
      prefix.call.write({ node: { id: BILLING_SIDECAR }, type_url: TYPE.cluster, resource_names: [] });
      const pst = await prefix.status();
      expect(pst.code).toBe(grpc.status.PERMISSION_DENIED);
      expect(pst.details).toContain(`does not belong to the certificate's identity ${PREFIX}`);
      prefix.close();
      const nameless = ads(await namelessCertificate(join(tmp.dir, "pki")));
      nameless.call.write({ node: { id: "anything" }, type_url: TYPE.cluster, resource_names: [] });
      const nst = await nameless.status();
      expect(nst.code).toBe(grpc.status.PERMISSION_DENIED);
      expect(nst.details).toContain("names no identity");
      nameless.close();

      const stranger = ads(creds(otherCa, "sidecar"));
      stranger.call.write({ node: { id: BILLING_SIDECAR }, type_url: TYPE.cluster, resource_names: [] });
      expect((await stranger.status()).code).toBe(grpc.status.UNAVAILABLE);
      stranger.close();
    });
  });

  it("one identity's flood of requests or watches is bounded, and other identities are still served", async () => {
    const flood = migrationClient(svc.address, creds(pki, "flood"));
    // Open streams: 200 per identity, over several connections (each takes 100 streams at once); the next is refused.
    const conns = [0, 1, 2].map((i) =>
      migrationClient(svc.address, creds(pki, "flood"), { "grpc.channel_id": i } as grpc.ChannelOptions),
    );
    const watches: grpc.ClientReadableStream<any>[] = [];
    for (let i = 0; i < 200; i++) {
      const w = conns[i % 3]!.WatchMigration({ id: ids["billing-db"] });
      w.on("error", () => {});
      w.on("data", () => {});
      watches.push(w);
    }
    await expect
      .poll(() => unaryError(flood, "GetMigration", { id: "x" }).then((e) => e.code))
      .toBe(grpc.status.NOT_FOUND);
    const extra = flood.WatchMigration({ id: ids["billing-db"] });
    const refused = await new Promise<grpc.ServiceError>((res) => extra.on("error", res));
    expect(refused.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(refused.details).toContain(`${FLOOD} already has 200 open streams`);
    for (const w of watches) w.cancel();
    // Dropped streams give their places back.
    await expect
      .poll(
        async () => {
          const w = flood.WatchMigration({ id: ids["billing-db"] });
          const got = await new Promise<string>(
            (res) => (
              w.on("data", () => res("data")),
              w.on("error", (e: grpc.ServiceError) => res(grpc.status[e.code]!))
            ),
          );
          w.cancel();
          return got;
        },
        { timeout: 10_000, interval: 200 },
      )
      .toBe("data");

    // Requests: a burst of 400, then 200 a second (calls refused by their own handler at once, so the flood outruns the refill).
    const codes = await Promise.all(
      Array.from({ length: 1200 }, (_, i) =>
        unary(conns[i % 3]!, "GetRoutingStatus", { database_name: "" }).then(
          () => "OK",
          (e: grpc.ServiceError) => grpc.status[e.code],
        ),
      ),
    );
    expect(codes).toContain("RESOURCE_EXHAUSTED");
    expect(codes.filter((c) => c !== "INVALID_ARGUMENT" && c !== "RESOURCE_EXHAUSTED")).toEqual([]);
    // Another identity is not held back by it.
    await expect(unary(billing, "GetMigration", { id: ids["billing-db"] })).resolves.toBeDefined();
    flood.close();
    for (const c of conns) c.close();
  });

  it("a changed policy and rotated certificates take effect without a restart", async () => {
    replace(
      files.policy,
      POLICY.replace(
        'databases: ["billing-*"]\n    role: approver',
        'databases: ["billing-*", "payments-db"]\n    role: approver',
      ),
    );
    await expect
      .poll(async () => (await unary(billing, "ListMigrations", {})).migrations.length, {
        timeout: 10_000,
        interval: 100,
      })
      .toBe(3);
    // A broken policy keeps the last good one in force.
    replace(files.policy, "grants: [oops");
    await new Promise((r) => setTimeout(r, 600));
    expect((await unary(billing, "ListMigrations", {})).migrations).toHaveLength(3);
    expect(svc.stderr()).toContain("did not load");

    // Rotate to the other CA: its clients get in, the old CA's no longer do.
    replace(files.ca, readFileSync(otherCa.ca));
    replace(files.key, readFileSync(otherCa.server.key));
    replace(files.cert, readFileSync(otherCa.server.cert));
    const fresh = migrationClient(svc.address, creds(otherCa, "admin"));
    await expect
      .poll(
        () =>
          unary(fresh, "ListMigrations", {}).then(
            (r) => r.migrations.length,
            () => -1,
          ),
        { timeout: 10_000, interval: 200 },
      )
      .toBe(3);
    fresh.close();
    const old = migrationClient(svc.address, creds(pki, "admin"));
    await expect(unary(old, "ListMigrations", {})).rejects.toMatchObject({ code: grpc.status.UNAVAILABLE });
    old.close();
  });
});
