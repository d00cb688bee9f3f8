import { DescribeDBInstancesCommand, RDSClient } from "@aws-sdk/client-rds";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RdsEmulator } from "../testing/aws-emulator/rds-emulator.js";
import { OWNER_TAG, RdsControl, type ReplicaSpec } from "../src/providers/aws/rds-control.js";
import { LocalProvider } from "../src/providers/local/local-provider.js";
import { createSampleSource, type AppCredentials } from "../testing/sample.js";
import { destroyClusters } from "./helpers/clusters.js";
import { tempDir } from "./helpers/service-process.js";
import { EMULATOR_KEY, shippedIamPolicy } from "./helpers/aws.js";

const SPEC: ReplicaSpec = {
  sourceId: "billing",
  clusterId: "billing-aurora",
  instanceId: "billing-aurora-1",
  instanceClass: "db.r6g.large",
  engineVersion: "15",
  owner: "m-emulated",
};

async function canWrite(port: number, app: AppCredentials): Promise<string> {
  const c = new pg.Client({
    host: "127.0.0.1",
    port,
    user: app.user,
    password: app.password,
    database: app.database,
    connectionTimeoutMillis: 2000,
  });
  c.on("error", () => {});
  try {
    await c.connect();
    await c.query("insert into items (payload) values ('emulated')");
    return "written";
  } catch (e) {
    return (e as { code?: string }).code ?? (e as Error).message;
  } finally {
    await c.end().catch(() => {});
  }
}

describe("RdsControl through the real AWS SDK against the local RDS endpoint (real clusters behind it)", () => {
  const tmp = tempDir("aws-emu");
  const local = new LocalProvider(tmp.dir);
  const emulator = new RdsEmulator(local, {
    credentials: EMULATOR_KEY,
    policy: shippedIamPolicy(),
    denyAllGroup: "sg-deny",
    stepMs: 100,
    throttleFirst: 2,
    maxPage: 1,
  });
  let rds: RDSClient;
  let control: RdsControl;
  let app: AppCredentials;

  beforeAll(async () => {
    ({ app } = await createSampleSource(local, "billing", { rows: 500 }));
    await emulator.addInstance("billing", { database: "billing-db" });
    const endpoint = await emulator.listen();
    rds = new RDSClient({ region: "eu-west-1", endpoint, credentials: EMULATOR_KEY, maxAttempts: 5 });
    control = new RdsControl(rds, { pollMs: 100 });
  }, 60_000);

  afterAll(async () => {
    rds?.destroy();
    await emulator.close();
    await destroyClusters(local);
    tmp.remove();
  });

  it("the SDK's own retry strategy rides out throttling, and its deserializer reads the emulator's answers", async () => {
    const out = await rds.send(new DescribeDBInstancesCommand({ DBInstanceIdentifier: "billing" }));
    expect(out.$metadata.attempts).toBe(3);
    expect(out.DBInstances?.[0]).toMatchObject({
      DBInstanceIdentifier: "billing",
      Engine: "postgres",
      DBInstanceStatus: "available",
    });
    expect(out.DBInstances?.[0]?.VpcSecurityGroups?.[0]?.VpcSecurityGroupId).toBe("sg-app");
    await expect(rds.send(new DescribeDBInstancesCommand({ DBInstanceIdentifier: "nope" }))).rejects.toMatchObject({
      name: "DBInstanceNotFoundFault",
    });
  });

  it("creates a real streaming replica, tagged; a second call creates nothing", async () => {
    const c = await control.ensureReplica(SPEC, 120_000);
    expect(c).toMatchObject({ Status: "available", Engine: "aurora-postgresql" });
    expect(c.TagList).toContainEqual({ Key: OWNER_TAG, Value: SPEC.owner });
    expect((await local.replicationStatus({ id: "billing" }, { id: "billing-aurora" })).state).toBe("streaming");
    const creates = emulator.calls.filter((a) => a.startsWith("Create")).length;
    await control.ensureReplica(SPEC, 120_000);
    expect(emulator.calls.filter((a) => a.startsWith("Create")).length).toBe(creates);
  }, 180_000);

  it("the network fence stops the application's writes, unfence lets them back", async () => {
    const port = (await local.endpoint({ id: "billing" })).port;
    expect(await canWrite(port, app)).toBe("written");
    const groups = await control.networkFence("billing", "sg-deny", 60_000);
    expect(groups).toEqual(["sg-app"]);
    expect(await canWrite(port, app)).not.toBe("written");
    await control.networkUnfence("billing", groups, 60_000);
    expect(await canWrite(port, app)).toBe("written");
  }, 120_000);

  it("promotion makes the replica a writable primary; a tagged replica is the only thing deleted", async () => {
    const c = await control.promote("billing-aurora", 120_000);
    expect(c.ReplicationSourceIdentifier).toBeUndefined();
    expect(await canWrite(c.Port!, app)).toBe("written");
    expect(await control.deleteReplica("billing-aurora", "billing-aurora-1", "another-migration")).toBe("not-ours");
    expect(await control.retire("billing", "stop", "pgshift-final-m1")).toContain(
      "stopped after its final snapshot pgshift-final-m1",
    );
    await expect
      .poll(async () => (await control.instance("billing"))?.DBInstanceStatus, { timeout: 30_000 })
      .toBe("stopped");
    expect(await local.cluster({ id: "billing" }).isRunning()).toBe(false);
    expect(emulator.snapshots.get("pgshift-final-m1")).toMatchObject({ instance: "billing" });
    // Retried (a finalize resumed after a crash): nothing more is asked of AWS.
    expect(await control.retire("billing", "stop", "pgshift-final-m1")).toBe("billing is stopped already");
    // Day 8: AWS starts the instance by itself; the keeper stops it again, and says so.
    expect(await control.keepStopped("billing")).toBeUndefined();
    await emulator.startInstance("billing");
    expect(await local.cluster({ id: "billing" }).isRunning()).toBe(true);
    expect(await control.keepStopped("billing")).toMatch(/billing was available again .*stopped again/);
    await expect
      .poll(async () => (await control.instance("billing"))?.DBInstanceStatus, { timeout: 30_000 })
      .toBe("stopped");
    expect(await local.cluster({ id: "billing" }).isRunning()).toBe(false);
  }, 180_000);

  it("every call asked of the endpoint, with its resource and tags, is one deploy/aws/iam-policy.json allows", () => {
    expect(emulator.judged.length).toBeGreaterThan(10);
    expect(new Set(emulator.judged.map((j) => j.request.action))).toContain("rds:StopDBInstance");
    expect(emulator.judged.filter((j) => !j.decision.allowed)).toEqual([]);
  });

  it("pages DescribeDBInstances as RDS does (MaxRecords, Marker), and refuses a page size RDS refuses", async () => {
    const { DescribeDBInstancesCommand, paginateDescribeDBInstances } = await import("@aws-sdk/client-rds");
    const ids: string[] = [];
    for await (const page of paginateDescribeDBInstances({ client: rds, pageSize: 20 }, {}))
      ids.push(...(page.DBInstances ?? []).map((i) => i.DBInstanceIdentifier!));
    expect(ids.length).toBeGreaterThan(0);
    expect(new Set(ids).size).toBe(ids.length);
    await expect(rds.send(new DescribeDBInstancesCommand({ MaxRecords: 5 }))).rejects.toMatchObject({
      name: "InvalidParameterValue",
    });
  });
});
