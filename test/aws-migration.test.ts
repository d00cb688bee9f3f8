import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  AddTagsToResourceCommand,
  DescribeDBInstancesCommand,
  ModifyDBInstanceCommand,
  RDSClient,
  RebootDBInstanceCommand,
  StopDBInstanceCommand,
} from "@aws-sdk/client-rds";
import { GetSecretValueCommand, SecretsManagerClient } from "@aws-sdk/client-secrets-manager";
import { RdsEmulator } from "../testing/aws-emulator/rds-emulator.js";
import { makeDevPki } from "../src/security/dev-pki.js";
import { XdsTcpProxy } from "../src/proxy/xds-tcp-proxy.js";
import { LocalProvider } from "../src/providers/local/local-provider.js";
import { createSampleSource } from "../testing/sample.js";
import { WriteLoad } from "../testing/workload/write-load.js";
import { destroyClusters } from "./helpers/clusters.js";
import { migrationClient, unary, type AnyClient } from "./helpers/grpc-clients.js";
import { eventsSoFar, getMigration, localSpec, waitForPhase } from "./helpers/migrations.js";
import { startServiceProcess, tempDir, type ServiceProcess } from "./helpers/service-process.js";
import { EMULATOR_ENV, EMULATOR_KEY, shippedIamPolicy } from "./helpers/aws.js";

/** An SDK client of our own to read what the emulated account holds (fake credentials: the emulator wants a signature, not a valid one). */
const rdsFor = (endpoint: string) => new RDSClient({ region: "eu-west-1", endpoint, credentials: EMULATOR_KEY });

describe("a whole migration on PROVIDER_AWS, through @aws-sdk/client-rds, against the local RDS endpoint", () => {
  const tmp = tempDir("aws-migration");
  // The "AWS account": real clusters behind the emulator, apart from the service's own data.
  const account = new LocalProvider(join(tmp.dir, "account"));
  let emulator: RdsEmulator;
  let svc: ServiceProcess;
  let client: AnyClient;

  let emulatorEndpoint = "";

  beforeAll(async () => {
    // The instances present a certificate, as RDS's do, and the service checks it (verify-full) against the CA.
    const pki = await makeDevPki(join(tmp.dir, "tls"), { serverNames: ["127.0.0.1"], clients: [], days: 1 });
    const tls = { cert: readFileSync(pki.server.cert, "utf8"), key: readFileSync(pki.server.key, "utf8") };
    emulator = new RdsEmulator(account, {
      credentials: EMULATOR_KEY,
      policy: shippedIamPolicy(),
      denyAllGroup: "sg-deny",
      stepMs: 100,
      throttleFirst: 1,
      tls,
    });
    const endpoint = await emulator.listen();
    emulatorEndpoint = endpoint;
    // As on AWS, the engine's default cluster parameter group leaves logical decoding off.
    emulator.addClusterParameterGroup("pgshift-logical", { "rds.logical_replication": "1" });
    svc = await startServiceProcess(
      [
        "--data-dir",
        join(tmp.dir, "svc"),
        "--aws-region",
        "eu-west-1",
        "--aws-endpoint",
        endpoint,
        "--aws-deny-security-group",
        "sg-deny",
        "--aws-cluster-parameter-group",
        "pgshift-logical",
        "--aws-db-ssl",
        "verify-full",
        "--aws-ca-bundle",
        pki.ca,
        "--aws-cloudwatch",
        // Finalized sources are looked at twice a second here (hourly by default).
        "--retirement-check-ms",
        "500",
      ],
      // The SDK's default credential chain reads these; the emulator verifies every signature against them.
      EMULATOR_ENV,
    );
    client = migrationClient(svc.address);
  }, 60_000);

  /** An RDS instance NAME with rows, an automatic migration of NAME-db to NAME-aurora, and the application writing through a sidecar. */
  async function migrateUnderLoad(
    c: AnyClient,
    service: ServiceProcess,
    name: string,
    extra: Record<string, unknown> = {},
    kmsKeyId?: string,
  ) {
    const { app } = await createSampleSource(account, name, { rows: 1000 });
    await emulator.addInstance(name, { database: `${name}-db`, kmsKeyId });
    const proxy = new XdsTcpProxy({
      xds: `127.0.0.1:${service.xdsPort}`,
      nodeId: `${name}-sidecar`,
      listenPort: () => 0,
    });
    await proxy.start();
    const spec = localSpec(`${name}-db`, name, `${name}-aurora`, {
      provider: "PROVIDER_AWS",
      cutover_mode: "CUTOVER_MODE_AUTOMATIC",
      ...extra,
    });
    const m = (await unary(c, "CreateMigration", { spec })).migration;
    const load = new WriteLoad({
      host: "127.0.0.1",
      port: await proxy.waitForListener(`${name}-db`),
      ...app,
      ratePerSec: 50,
    });
    load.start();
    return { app, m, load, proxy };
  }

  afterAll(async () => {
    client?.close();
    await svc?.stop();
    await emulator.close();
    await destroyClusters(account);
    tmp.remove();
  });

  it("RDS instance to Aurora cluster under a live write load, network fence: COMPLETED, every committed row on the target; rolled back, every row on the source", async () => {
    // The spec chooses the network fence; the service's default is the roles fence.
    const { app, m, load, proxy } = await migrateUnderLoad(client, svc, "billing", {
      fence_mode: "FENCE_MODE_NETWORK",
    });
    const { phase, events } = await waitForPhase(
      client,
      m.id,
      ["PHASE_COMPLETED", "PHASE_FAILED", "PHASE_ROLLED_BACK"],
      180_000,
    );
    expect(phase, events.map((e) => e.message).join(" | ")).toBe("PHASE_COMPLETED");
    const got = await getMigration(client, m.id);
    console.log(
      "aws-migration:",
      JSON.stringify({
        window: got.cutover?.window,
        calls: [...new Set(emulator.calls)],
        committed: load.committed.length,
      }),
    );
    // Every id the application saw committed is on the promoted Aurora cluster (a local standby behind the emulator).
    const ids = async (id: string) =>
      new Set(
        (await account.cluster({ id }).query<{ id: string }>("select id::text from items", [], "app")).map((r) => r.id),
      );
    // The load goes on: what it had committed before the read must be there.
    const committed = [...load.committed];
    const onTarget = await ids("billing-aurora");
    expect(committed.length).toBeGreaterThan(50);
    expect(committed.filter((id) => !onTarget.has(id.toString()))).toEqual([]);
    // The SDK made the calls the plan lists: a replica cluster and its writer, a security-group fence and a reboot, a promotion.
    for (const a of [
      "CreateDBCluster",
      "CreateDBInstance",
      "ModifyDBInstance",
      "RebootDBInstance",
      "PromoteReadReplicaDBCluster",
      "secretsmanager:GetSecretValue",
    ]) {
      expect(emulator.calls, a).toContain(a);
    }
    expect(emulator.calls.filter((a) => a === "CreateDBCluster")).toHaveLength(1);
    // The old source stays behind the deny-all group (its pg_hba fence, in the emulator) until finalize or rollback.
    expect(await account.isFenced({ id: "billing" })).toBe(true);
    // The lag gate read CloudWatch too (the emulator's figures are measured on the clusters behind it).
    const lagWindow = got.checks.find((c: { name: string }) => c.name === "replication.lag_window");
    expect(lagWindow.measured).toMatch(
      /CloudWatch: RDSToAuroraPostgreSQLReplicaLag \d+\.\d\ds, OldestReplicationSlotLag [\d.]+ MiB, TransactionLogsDiskUsage [\d.]+ MiB/,
    );
    expect(emulator.calls).toContain("cloudwatch:GetMetricData");
    // The source's storage was watched from PROVISIONING on, from CloudWatch against its allocated storage.
    expect(got.checks.find((c: { name: string }) => c.name === "storage.source").measured).toMatch(
      /^billing: [\d.]+ \w+ free of [\d.]+ \w+ \([\d.]+%\), [\d.]+ \w+ of it WAL; CloudWatch FreeStorageSpace, TransactionLogsDiskUsage$/,
    );
    // Reverse replication, the source's own connection to the target, is encrypted too.
    const walsenders = await account
      .cluster({ id: "billing-aurora" })
      .query<{ ssl: boolean }>(
        "select s.ssl from pg_stat_ssl s join pg_stat_activity a using (pid) where a.backend_type = 'walsender'",
      );
    expect(walsenders.length).toBeGreaterThan(0);
    expect(walsenders.every((w) => w.ssl)).toBe(true);

    // Rolled back: a promoted cluster has no single security-group change and reboot, so the roles fence stops its
    // writers; the source gets its groups back and the record of them is removed.
    await unary(client, "RollbackMigration", { id: m.id, reason: "drill with the network fence" });
    const back = await waitForPhase(client, m.id, ["PHASE_ROLLED_BACK", "PHASE_FAILED"], 180_000);
    await load.stop();
    await proxy.stop();
    expect(back.phase, back.events.map((e) => e.message).join(" | ")).toBe("PHASE_ROLLED_BACK");
    const onSource = await ids("billing");
    expect(load.committed.filter((id) => !onSource.has(id.toString()))).toEqual([]);
    expect(await account.isFenced({ id: "billing" })).toBe(false);
    const login = (
      await account
        .cluster({ id: "billing-aurora" })
        .query<{ l: boolean }>("select rolcanlogin as l from pg_roles where rolname = $1", [app.user])
    )[0]!.l;
    expect(login).toBe(false);
    const tags = async (id: string) =>
      (
        await rdsFor(emulatorEndpoint).send(new DescribeDBInstancesCommand({ DBInstanceIdentifier: id }))
      ).DBInstances![0]!.TagList!.map((t) => t.Key);
    expect(await tags("billing")).not.toContain("pgshift:pre-fence-security-groups");
    expect(emulator.calls).toContain("RemoveTagsFromResource");
  }, 300_000);

  it("with the roles fence (the default) it cuts over and rolls back: every committed row on the source, the application's role able to log in on both sides", async () => {
    const { app, m, load, proxy } = await migrateUnderLoad(client, svc, "orders");
    const done = await waitForPhase(client, m.id, ["PHASE_COMPLETED", "PHASE_FAILED", "PHASE_ROLLED_BACK"], 180_000);
    expect(done.phase, done.events.map((e) => e.message).join(" | ")).toBe("PHASE_COMPLETED");
    // The roles the fence took LOGIN from log in on the promoted cluster.
    const login = async (id: string) =>
      (
        await account
          .cluster({ id })
          .query<{ l: boolean }>("select rolcanlogin as l from pg_roles where rolname = $1", [app.user])
      )[0]!.l;
    expect(await login("orders-aurora")).toBe(true);
    const reboots = emulator.calls.filter((a) => a === "RebootDBInstance").length;
    await unary(client, "RollbackMigration", { id: m.id, reason: "drill on AWS" });
    const back = await waitForPhase(client, m.id, ["PHASE_ROLLED_BACK", "PHASE_FAILED"], 180_000);
    await load.stop();
    await proxy.stop();
    expect(back.phase, back.events.map((e) => e.message).join(" | ")).toBe("PHASE_ROLLED_BACK");
    const ids = new Set(
      (await account.cluster({ id: "orders" }).query<{ id: string }>("select id::text from items", [], "app")).map(
        (r) => r.id,
      ),
    );
    expect(load.committed.length).toBeGreaterThan(50);
    expect(load.committed.filter((id) => !ids.has(id.toString()))).toEqual([]);
    expect(await login("orders")).toBe(true);
    // The roles fence made no security-group change and no reboot.
    expect(emulator.calls.filter((a) => a === "RebootDBInstance")).toHaveLength(reboots);
  }, 300_000);

  it("finalize retires an encrypted source after a final snapshot, and stops it again when AWS starts it by itself (day 8)", async () => {
    const key = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    const { m, load, proxy } = await migrateUnderLoad(client, svc, "archive", {}, key);
    const done = await waitForPhase(client, m.id, ["PHASE_COMPLETED", "PHASE_FAILED", "PHASE_ROLLED_BACK"], 180_000);
    expect(done.phase, done.events.map((e) => e.message).join(" | ")).toBe("PHASE_COMPLETED");
    await load.stop();
    await proxy.stop();
    await unary(client, "FinalizeMigration", { id: m.id, reason: "drill" });
    const fin = await waitForPhase(client, m.id, ["PHASE_FINALIZED", "PHASE_FAILED"], 60_000);
    expect(fin.phase).toBe("PHASE_FINALIZED");
    expect(fin.events.find((e) => e.transition?.to === "PHASE_FINALIZED").message).toContain(
      `archive stopped after its final snapshot pgshift-final-${m.id}`,
    );
    expect(emulator.snapshots.get(`pgshift-final-${m.id}`)).toMatchObject({ instance: "archive" });
    const status = async () =>
      (await rdsFor(emulatorEndpoint).send(new DescribeDBInstancesCommand({ DBInstanceIdentifier: "archive" })))
        .DBInstances![0]!.DBInstanceStatus;
    await expect.poll(status, { timeout: 30_000 }).toBe("stopped");
    // Day 8: AWS starts it. The service stops it again and says so on the migration.
    await emulator.startInstance("archive");
    await expect.poll(status, { timeout: 30_000, interval: 200 }).toBe("stopped");
    expect(await account.cluster({ id: "archive" }).isRunning()).toBe(false);
    const again = (await eventsSoFar(client, m.id)).find((e) => e.check?.name === "retirement.source");
    expect(again?.check).toMatchObject({
      status: "CHECK_STATUS_WARN",
      measured: expect.stringContaining("archive was available again"),
    });
  }, 300_000);

  it("AWS refusing the promotion (AccessDenied) leads where a failed promotion leads locally: rolled back, the error named, every committed row on the source", async () => {
    emulator.refuse(
      "PromoteReadReplicaDBCluster",
      "AccessDenied",
      403,
      "User is not authorized to perform: rds:PromoteReadReplicaDBCluster",
    );
    const promotions = () => emulator.calls.filter((a) => a === "PromoteReadReplicaDBCluster").length;
    const before = promotions();
    try {
      const { m, load, proxy } = await migrateUnderLoad(client, svc, "payroll");
      const end = await waitForPhase(client, m.id, ["PHASE_ROLLED_BACK", "PHASE_COMPLETED", "PHASE_FAILED"], 180_000);
      // A refusal no retry can fix: no second attempt at PROMOTING, straight to the rollback.
      expect(promotions() - before).toBe(1);
      await new Promise((r) => setTimeout(r, 500));
      await load.stop();
      await proxy.stop();
      expect(end.phase, end.events.map((e) => e.message).join(" | ")).toBe("PHASE_ROLLED_BACK");
      const failed = end.events.find((e) => e.type === "EVENT_TYPE_STEP_FAILED");
      expect(failed.message).toMatch(/AWS refused rds:PromoteReadReplicaDBCluster \(AccessDenied.*iam-policy\.json/);
      // The replica never promoted took no write: the rollback is one from before promotion, which removes it.
      expect(emulator.calls).toContain("DeleteDBCluster");
      // The source serves again, unfenced, with every write the application saw committed.
      expect(await account.isFenced({ id: "payroll" })).toBe(false);
      const ids = new Set(
        (await account.cluster({ id: "payroll" }).query<{ id: string }>("select id::text from items", [], "app")).map(
          (r) => r.id,
        ),
      );
      expect(load.committed.length).toBeGreaterThan(50);
      expect(load.committed.filter((id) => !ids.has(id.toString()))).toEqual([]);
    } finally {
      emulator.allow("PromoteReadReplicaDBCluster");
    }
  }, 300_000);

  it("preflight reads what only AWS knows: a cluster parameter group without logical decoding fails the migration before anything is created", async () => {
    await createSampleSource(account, "ledger", { rows: 10 });
    await emulator.addInstance("ledger", { parameters: { work_mem: "64MB" }, database: "ledger-db" });
    const major = (await account.describe({ id: "ledger" })).major;
    const spec = (group: string) =>
      localSpec("ledger-db", "ledger", "ledger-aurora", {
        provider: "PROVIDER_AWS",
        aws: { cluster_parameter_group: group },
      });
    const verdicts = async (group: string) =>
      Object.fromEntries(
        ((await unary(client, "RunPreflight", { spec: spec(group) })).checks as any[]).map((c) => [c.name, c]),
      );
    // The engine's default group, as AWS ships it: rds.logical_replication = 0.
    const dflt = await verdicts(`default.aurora-postgresql${major}`);
    expect(dflt["aws.logical_replication"]).toMatchObject({
      status: "CHECK_STATUS_FAIL",
      measured: `rds.logical_replication = 0 in default.aurora-postgresql${major}`,
    });
    expect(dflt["aws.logical_replication"].remedy).toMatch(
      /rds\.logical_replication = 1.*spec\.aws\.cluster_parameter_group/,
    );
    expect(dflt["aws.engine_version"].status).toBe("CHECK_STATUS_PASS");
    // What an operator set on the source's own group and the target's group does not carry.
    expect(dflt["aws.parameter_groups"]).toMatchObject({
      status: "CHECK_STATUS_WARN",
      measured: "work_mem: 64MB -> engine default",
    });
    expect((await verdicts("no-such-group"))["aws.logical_replication"].measured).toBe(
      "DB cluster parameter group no-such-group does not exist",
    );
    expect((await verdicts("pgshift-logical"))["aws.logical_replication"].status).toBe("CHECK_STATUS_PASS");
    // Started anyway, the migration fails in PREFLIGHT and AWS is asked to create nothing.
    const creates = emulator.calls.filter((a) => a.startsWith("Create")).length;
    const m = (await unary(client, "CreateMigration", { spec: spec(`default.aurora-postgresql${major}`) })).migration;
    const end = await waitForPhase(client, m.id, ["PHASE_FAILED", "PHASE_PROVISIONING"], 60_000);
    expect(end.phase).toBe("PHASE_FAILED");
    expect((await getMigration(client, m.id)).last_error.message).toMatch(/aws\.logical_replication/);
    expect(emulator.calls.filter((a) => a.startsWith("Create")).length).toBe(creates);
  });

  it("every AWS call made in this file, with its resource and tags, is one deploy/aws/iam-policy.json allows; the same call on an untagged resource is not", async () => {
    // The endpoint judged each call (and the KMS use RDS makes for an encrypted source) by the shipped policy as it came.
    const judged = emulator.judged;
    const actions = new Set(judged.map((j) => j.request.action));
    for (const a of [
      "rds:CreateDBCluster",
      "rds:CreateDBInstance",
      "rds:AddTagsToResource",
      "rds:RemoveTagsFromResource",
      "rds:PromoteReadReplicaDBCluster",
      "rds:ModifyDBInstance",
      "rds:RebootDBInstance",
      "rds:StopDBInstance",
      "rds:DeleteDBCluster",
      "kms:CreateGrant",
      "kms:DescribeKey",
      "secretsmanager:GetSecretValue",
      "cloudwatch:GetMetricData",
    ]) {
      expect(actions, a).toContain(a);
    }
    // Refused only where this file took a permission away (PromoteReadReplicaDBCluster, above, is refused before IAM).
    expect(judged.filter((j) => !j.decision.allowed)).toEqual([]);
    // Resources are named, not "*", wherever RDS allows it, and changes carry the tags the policy's conditions read.
    const on = (a: string) => judged.filter((j) => j.request.action === a);
    expect(
      on("rds:StopDBInstance").every(
        (j) =>
          /^arn:aws:rds:eu-west-1:\d+:db:/.test(j.request.resource) &&
          j.request.context["aws:ResourceTag/pgshift:database"],
      ),
    ).toBe(true);
    expect(on("rds:DeleteDBCluster").every((j) => j.request.context["aws:ResourceTag/pgshift:migration-id"])).toBe(
      true,
    );
    expect(on("kms:CreateGrant")[0]!.request.context["kms:ViaService"]).toBe("rds.eu-west-1.amazonaws.com");

    // An instance the platform did not tag: the very calls a cutover and a finalize make are refused by the policy.
    await createSampleSource(account, "stranger", { rows: 1 });
    await emulator.addInstance("stranger");
    const rds = rdsFor(emulatorEndpoint);
    try {
      for (const cmd of [
        new ModifyDBInstanceCommand({
          DBInstanceIdentifier: "stranger",
          VpcSecurityGroupIds: ["sg-deny"],
          ApplyImmediately: true,
        }),
        new RebootDBInstanceCommand({ DBInstanceIdentifier: "stranger" }),
        new StopDBInstanceCommand({ DBInstanceIdentifier: "stranger" }),
        new AddTagsToResourceCommand({
          ResourceName: "arn:aws:rds:eu-west-1:123456789012:db:stranger",
          Tags: [{ Key: "pgshift:fenced-roles", Value: "app" }],
        }),
      ]) {
        const e = await rds.send(cmd as never).catch((err: { name: string; message: string }) => err);
        expect(e, cmd.constructor.name).toMatchObject({ name: "AccessDenied" });
        expect((e as { message: string }).message).toContain(
          "arn:aws:rds:eu-west-1:123456789012:db:stranger because no identity-based policy allows",
        );
      }
      // Nor may pgshift tag a source with anything but what its fence records.
      const retag = await rds
        .send(
          new AddTagsToResourceCommand({
            ResourceName: "arn:aws:rds:eu-west-1:123456789012:db:ledger",
            Tags: [{ Key: "pgshift:database", Value: "other-db" }],
          }),
        )
        .catch((err: { name: string }) => err);
      expect(retag).toMatchObject({ name: "AccessDenied" });
    } finally {
      rds.destroy();
    }
  });

  it("refuses a request signed with the wrong secret, as AWS does, over each protocol the endpoint speaks", async () => {
    const wrong = new RDSClient({
      region: "eu-west-1",
      endpoint: emulatorEndpoint,
      credentials: { ...EMULATOR_KEY, secretAccessKey: "not-the-secret" },
      maxAttempts: 1,
    });
    const stranger = new RDSClient({
      region: "eu-west-1",
      endpoint: emulatorEndpoint,
      credentials: { accessKeyId: "AKIDNOBODY", secretAccessKey: "x" },
      maxAttempts: 1,
    });
    const sm = new SecretsManagerClient({
      region: "eu-west-1",
      endpoint: emulatorEndpoint,
      credentials: { ...EMULATOR_KEY, secretAccessKey: "not-the-secret" },
      maxAttempts: 1,
    });
    try {
      await expect(wrong.send(new DescribeDBInstancesCommand({}))).rejects.toMatchObject({
        name: "SignatureDoesNotMatch",
        $metadata: { httpStatusCode: 403 },
      });
      await expect(stranger.send(new DescribeDBInstancesCommand({}))).rejects.toMatchObject({
        name: "InvalidClientTokenId",
      });
      await expect(
        sm.send(
          new GetSecretValueCommand({ SecretId: "arn:aws:secretsmanager:eu-west-1:123456789012:secret:rds!db-ledger" }),
        ),
      ).rejects.toMatchObject({
        name: "InvalidSignatureException",
      });
      // The right key still works.
      const ok = rdsFor(emulatorEndpoint);
      expect(
        (await ok.send(new DescribeDBInstancesCommand({ DBInstanceIdentifier: "ledger" }))).DBInstances?.[0]
          ?.DBInstanceIdentifier,
      ).toBe("ledger");
      ok.destroy();
    } finally {
      wrong.destroy();
      stranger.destroy();
      sm.destroy();
    }
  });
});
