import { execFile } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LocalProvider } from "../src/providers/local/local-provider.js";
import { createSampleSource, type AppCredentials } from "../testing/sample.js";
import { makeDevPki, serveTlsArgs, type DevPki } from "../src/security/dev-pki.js";
import { destroyClusters } from "./helpers/clusters.js";
import {
  campaignClient,
  grpc,
  migrationClient,
  mtlsCredentials,
  unary,
  unaryError,
  type AnyClient,
} from "./helpers/grpc-clients.js";
import { localSpec, waitForPhase } from "./helpers/migrations.js";
import { startServiceProcess, tempDir, type ServiceProcess } from "./helpers/service-process.js";

const run = promisify(execFile);
const BUNDLE = resolve(import.meta.dirname, "../dist/pgshift.mjs");
const ADMIN = "spiffe://test.example/platform/sa/admin";
const BILLING = "spiffe://test.example/team/billing/sa/deployer";
const PAYMENTS = "spiffe://test.example/team/payments/sa/deployer";

// Billing's deployer is an approver on billing-* only, as in the issue; the platform admin on everything.
const POLICY = `grants:
  - identities: ["${ADMIN}"]
    databases: ["**"]
    role: admin
  - identities: ["spiffe://test.example/team/billing/sa/*"]
    databases: ["billing-*"]
    role: approver
  - identities: ["spiffe://test.example/team/payments/sa/*"]
    teams: [payments]
    role: approver
`;

const PAYMENTS_SOURCE = "local:payments-src";

describe("the database inventory: a grant on database names never reaches another database's instance", () => {
  const tmp = tempDir("inventory");
  const provider = new LocalProvider(join(tmp.dir, "data", "local"));
  let pki: DevPki;
  let svc: ServiceProcess;
  let admin: AnyClient;
  let billing: AnyClient;
  let paymentsApi: AnyClient;
  let paymentsCampaigns: AnyClient;
  let paymentsApp: AppCredentials;
  let paymentsMigration: string;

  beforeAll(async () => {
    pki = await makeDevPki(join(tmp.dir, "pki"), {
      serverNames: ["127.0.0.1"],
      clients: [
        { name: "admin", identity: ADMIN },
        { name: "billing", identity: BILLING },
        { name: "payments", identity: PAYMENTS },
      ],
    });
    writeFileSync(join(tmp.dir, "policy.yaml"), POLICY);
    const [payments] = await Promise.all([
      createSampleSource(provider, "payments-src", { rows: 50 }),
      createSampleSource(provider, "billing-src", { rows: 50 }),
    ]);
    paymentsApp = payments.app;
    svc = await startServiceProcess([
      "--data-dir",
      join(tmp.dir, "data"),
      ...serveTlsArgs(pki, join(tmp.dir, "policy.yaml")),
    ]);
    admin = migrationClient(svc.address, mtlsCredentials(pki, "admin"));
    billing = migrationClient(svc.address, mtlsCredentials(pki, "billing"));
    paymentsApi = migrationClient(svc.address, mtlsCredentials(pki, "payments"));
    paymentsCampaigns = campaignClient(svc.address, mtlsCredentials(pki, "payments"));
  }, 120_000);

  afterAll(async () => {
    admin?.close();
    billing?.close();
    paymentsApi?.close();
    paymentsCampaigns?.close();
    await svc?.stop();
    await destroyClusters(provider);
    tmp.remove();
  });

  it("an admin registers each database once, with its instances, team and labels; an instance serves one database", async () => {
    const reg = (name: string, source: string, team: string, labels: Record<string, string> = {}) =>
      unary(admin, "RegisterDatabase", {
        database: { name, provider: "PROVIDER_LOCAL", instances: [{ id: source }], team, labels },
      });
    const first = await reg("payments-db", "payments-src", "payments", { tier: "gold" });
    expect(first.created).toBe(true);
    expect(first.database).toMatchObject({
      name: "payments-db",
      team: "payments",
      labels: { tier: "gold" },
      registered_by: ADMIN,
    });
    expect((await reg("billing-db", "billing-src", "billing")).created).toBe(true);
    // Again, the same: no second entry.
    expect((await reg("payments-db", "payments-src", "payments", { tier: "gold" })).created).toBe(false);

    const twice = await unaryError(admin, "RegisterDatabase", {
      database: { name: "billing-x", provider: "PROVIDER_LOCAL", instances: [{ id: "payments-src" }], team: "billing" },
    });
    expect(twice.code).toBe(grpc.status.ALREADY_EXISTS);
    expect(twice.details).toContain(`instance ${PAYMENTS_SOURCE} is registered to database "payments-db"`);

    const bad = await unaryError(admin, "RegisterDatabase", {
      database: { name: "x-db", provider: "PROVIDER_LOCAL", instances: [{ id: "x" }], team: "Billing Team" },
    });
    expect(bad.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(bad.details).toMatch(/^database\.team "Billing Team" is not valid/);

    // Billing may not register (that is an admin's), and sees only its own database.
    const denied = await unaryError(billing, "RegisterDatabase", {
      database: { name: "billing-x", provider: "PROVIDER_LOCAL", instances: [{ id: "payments-src" }], team: "billing" },
    });
    expect(denied.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(denied.details).toMatch(/may not register a database for database "billing-x": that needs role admin/);
    expect((await unary(billing, "ListDatabases", {})).databases.map((d: any) => d.name)).toEqual(["billing-db"]);
    expect(
      (await unary(admin, "ListDatabases", { labels: { tier: "gold" } })).databases.map((d: any) => d.name),
    ).toEqual(["payments-db"]);
    expect((await unary(admin, "ListDatabases", { team: "billing" })).databases.map((d: any) => d.name)).toEqual([
      "billing-db",
    ]);
  });

  it("billing's deployer cannot create a migration of payments' instance under any database name: PERMISSION_DENIED naming the instance", async () => {
    for (const name of ["billing-x", "billing-db", "payments-db"]) {
      const spec = localSpec(name, "payments-src", `stolen-${name}`, { cutover_mode: "CUTOVER_MODE_AUTOMATIC" });
      for (const method of ["CreateMigration", "RunPreflight"]) {
        const e = await unaryError(billing, method, { spec });
        expect(e.code, `${method} as ${name}`).toBe(grpc.status.PERMISSION_DENIED);
        expect(e.details, `${method} as ${name}`).toContain(PAYMENTS_SOURCE);
        expect(e.details).toContain(BILLING);
      }
    }
    // A name nobody registered reaches nothing either, even for the admin: the inventory must say which instances serve it.
    const unregistered = await unaryError(admin, "CreateMigration", {
      spec: localSpec("orders-db", "orders-src", "orders-tgt"),
    });
    expect(unregistered.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(unregistered.details).toMatch(/database "orders-db" is not registered; an admin registers it/);
    // Nor can a target be another database's instance.
    const target = await unaryError(admin, "CreateMigration", {
      spec: localSpec("billing-db", "billing-src", "payments-src"),
    });
    expect(target.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(target.details).toContain(`reaches instance ${PAYMENTS_SOURCE}: it is registered to database "payments-db"`);
  });

  it("billing's deployer cannot approve, roll back or abort payments' migration; its own runs to the end; nothing of payments' is fenced", async () => {
    paymentsMigration = (
      await unary(admin, "CreateMigration", { spec: localSpec("payments-db", "payments-src", "payments-tgt") })
    ).migration.id;
    for (const method of [
      "ApproveCutover",
      "RollbackMigration",
      "AbortMigration",
      "PauseMigration",
      "VerifyMigration",
    ]) {
      const e = await unaryError(billing, method, { id: paymentsMigration, reason: "" });
      expect(e.code, method).toBe(grpc.status.PERMISSION_DENIED);
      expect(e.details, method).toContain(`database "payments-db" (team payments, instance ${PAYMENTS_SOURCE})`);
    }
    const own = (
      await unary(billing, "CreateMigration", {
        spec: localSpec("billing-db", "billing-src", "billing-tgt", { cutover_mode: "CUTOVER_MODE_AUTOMATIC" }),
      })
    ).migration;
    expect((await waitForPhase(billing, own.id, ["PHASE_COMPLETED", "PHASE_FAILED"])).phase).toBe("PHASE_COMPLETED");
    // Payments' migration waits for its own approver; its source was never fenced and takes the application's writes.
    expect((await waitForPhase(admin, paymentsMigration, ["PHASE_READY_FOR_CUTOVER"])).phase).toBe(
      "PHASE_READY_FOR_CUTOVER",
    );
    expect(await provider.isFenced({ id: "payments-src" })).toBe(false);
    const app = new pg.Client({
      host: "127.0.0.1",
      port: (await provider.endpoint({ id: "payments-src" })).port,
      ...paymentsApp,
    });
    await app.connect();
    await app.query("insert into items (payload) values ('still ours')");
    await app.end();
    expect((await unary(admin, "GetMigration", { id: paymentsMigration })).migration.cutover_approved).toBe(false);
  });

  it("an instance cannot leave its database while a live migration takes it as source", async () => {
    const e = await unaryError(admin, "RegisterDatabase", {
      database: {
        name: "payments-db",
        provider: "PROVIDER_LOCAL",
        instances: [{ id: "payments-other" }],
        team: "payments",
      },
    });
    expect(e.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(e.details).toContain(
      `migration ${paymentsMigration} of payments-db is live and takes ${PAYMENTS_SOURCE} as its source`,
    );
  });

  it("a grant by team covers the databases the inventory gives that team: their migrations and campaigns, no others", async () => {
    // Payments' deployer holds approver on team payments, whatever its databases are called.
    expect((await unary(paymentsApi, "GetMigration", { id: paymentsMigration })).migration.spec.database_name).toBe(
      "payments-db",
    );
    expect((await unary(paymentsApi, "ListDatabases", {})).databases.map((d: any) => d.name)).toEqual(["payments-db"]);
    expect((await unary(paymentsApi, "ListMigrations", { database_name: "billing-db" })).migrations).toEqual([]);
    // The fleet's live view shows it payments' migration, and billing's none.
    const fleet: string[] = await new Promise((resolve, reject) => {
      const seen: string[] = [];
      const stream = paymentsApi.WatchMigrations({});
      stream.on("data", (d: any) => seen.push(d.migration.spec.database_name));
      stream.on("error", (e: any) => (e.code === grpc.status.CANCELLED ? resolve(seen) : reject(e)));
      setTimeout(() => stream.cancel(), 1000);
    });
    expect([...new Set(fleet)]).toEqual(["payments-db"]);
    // A campaign over two teams needs a role covering both.
    const spec = (names: string[]) => ({ name: "pay", select: { names }, targets: { id_template: "{source}-next" } });
    const both = await unaryError(paymentsCampaigns, "CreateCampaign", { spec: spec(["payments-db", "billing-db"]) });
    expect(both.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(both.details).toBe(
      `${PAYMENTS} may not create a campaign (which approves cutovers) over for database "billing-db" (team billing): that needs role approver (to approve or roll back) on it, and the policy grants no role`,
    );
    const own = await unary(paymentsCampaigns, "CreateCampaign", { spec: spec(["payments-db"]) });
    expect(own.campaign.items.map((i: any) => i.database_name)).toEqual(["payments-db"]);
    const billingCampaigns = campaignClient(svc.address, mtlsCredentials(pki, "billing"));
    const seen = await unaryError(billingCampaigns, "GetCampaign", { id: own.campaign.id });
    expect(seen.code).toBe(grpc.status.PERMISSION_DENIED);
    expect((await unary(billingCampaigns, "ListCampaigns", {})).campaigns).toEqual([]);
    billingCampaigns.close();
    expect((await unary(paymentsCampaigns, "CancelCampaign", { id: own.campaign.id })).campaign.state).toBe(
      "CAMPAIGN_STATE_CANCELLED",
    );
  });

  it("the CLI registers and lists databases", async () => {
    const c = pki.clients.admin!;
    const tls = ["--api", `https://127.0.0.1:${svc.port}`, "--ca", pki.ca, "--cert", c.cert, "--key", c.key];
    const reg = await run(process.execPath, [
      BUNDLE,
      "ctl",
      "register",
      "ledger-db",
      "--instance",
      "ledger-a",
      "--instance",
      "ledger-b",
      "--team",
      "finance",
      "--label",
      "tier=gold",
      ...tls,
    ]);
    expect(JSON.parse(reg.stdout)).toMatchObject({
      database: { name: "ledger-db", instances: [{ id: "ledger-a" }, { id: "ledger-b" }], team: "finance" },
      created: true,
    });
    const list = await run(process.execPath, [BUNDLE, "ctl", "databases", "--label", "tier=gold", ...tls]);
    expect(JSON.parse(list.stdout).databases.map((d: any) => d.name)).toEqual(["ledger-db", "payments-db"]);
    const bad = await run(process.execPath, [
      BUNDLE,
      "ctl",
      "register",
      "ledger-db",
      "--team",
      "finance",
      ...tls,
    ]).catch((e: { code: number; stderr: string }) => e);
    expect(bad).toMatchObject({ code: 64 });
    expect((bad as { stderr: string }).stderr).toContain("needs --instance ID");
  });
});
