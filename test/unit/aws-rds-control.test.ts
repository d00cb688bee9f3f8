import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import {
  AddTagsToResourceCommand,
  CreateDBClusterCommand,
  CreateDBInstanceCommand,
  DBClusterNotFoundFault,
  DBInstanceNotFoundFault,
  DeleteDBClusterCommand,
  DeleteDBInstanceCommand,
  DBParameterGroupNotFoundFault,
  DescribeDBClusterParametersCommand,
  DescribeDBClustersCommand,
  DescribeDBEngineVersionsCommand,
  DescribeDBInstancesCommand,
  DescribeDBParametersCommand,
  ModifyDBInstanceCommand,
  PromoteReadReplicaDBClusterCommand,
  RDSClient,
  RebootDBInstanceCommand,
  RemoveTagsFromResourceCommand,
  StopDBInstanceCommand,
  type DBCluster,
  type DBInstance,
} from "@aws-sdk/client-rds";
import { mockClient } from "aws-sdk-client-mock";
import { afterAll, beforeEach, describe, expect, it } from "vitest";
import { OWNER_TAG, RdsControl, SOURCE_TAG, type ReplicaSpec } from "../../src/providers/aws/rds-control.js";
import { awsPlan } from "../../src/providers/aws/plan.js";
import { awsPreflight, TAG_VALUE_MAX } from "../../src/providers/aws/preflight.js";

const rds = mockClient(RDSClient);
const control = () =>
  new RdsControl(new RDSClient({ region: "eu-west-1" }), {
    pollMs: 1,
    notFoundGraceMs: 50,
    sleep: () => Promise.resolve(),
  });
/** Every AWS action any test made, to hold the IAM policy to. */
const made = new Set<string>();
/** What the create and the network fence sent, with a wait's repeated describes shown once, as the plan shows them. */
const observed: Record<string, string[]> = {};
const collapse = (xs: string[]) => xs.filter((x, i) => x !== xs[i - 1]);

const SOURCE: DBInstance = {
  DBInstanceIdentifier: "billing",
  DBInstanceArn: "arn:aws:rds:eu-west-1:123456789012:db:billing",
  DBInstanceStatus: "available",
  Engine: "postgres",
  EngineVersion: "15.8",
  VpcSecurityGroups: [{ VpcSecurityGroupId: "sg-app", Status: "active" }],
  DBSubnetGroup: { DBSubnetGroupName: "private" },
  StorageEncrypted: true,
  KmsKeyId: "arn:aws:kms:eu-west-1:123456789012:key/k",
};
const SPEC: ReplicaSpec = {
  sourceId: "billing",
  clusterId: "billing-aurora",
  instanceId: "billing-aurora-1",
  instanceClass: "db.r6g.large",
  engineVersion: "15.8",
  owner: "m-1",
};
const ours = [{ Key: OWNER_TAG, Value: "m-1" }];
const notFound = (what: "cluster" | "instance") =>
  what === "cluster"
    ? new DBClusterNotFoundFault({ message: "not found", $metadata: {} })
    : new DBInstanceNotFoundFault({ message: "not found", $metadata: {} });

/** The names of the commands sent, in order. */
const sent = () =>
  rds.calls().map((c) => {
    const name = (c.args[0] as object).constructor.name.replace(/Command$/, "");
    made.add(`rds:${name}`);
    return name;
  });

/** Answers DescribeDBInstances per identifier from a script of successive states. */
function instances(script: Record<string, Array<DBInstance | Error>>): void {
  const at: Record<string, number> = {};
  rds.on(DescribeDBInstancesCommand).callsFake((input: { DBInstanceIdentifier: string }) => {
    const id = input.DBInstanceIdentifier;
    const steps = script[id] ?? [notFound("instance")];
    const step = steps[Math.min(at[id] ?? 0, steps.length - 1)]!;
    at[id] = (at[id] ?? 0) + 1;
    if (step instanceof Error) throw step;
    return { DBInstances: [step] };
  });
}

function clusters(steps: Array<DBCluster | Error>): void {
  let at = 0;
  rds.on(DescribeDBClustersCommand).callsFake(() => {
    const step = steps[Math.min(at++, steps.length - 1)]!;
    if (step instanceof Error) throw step;
    return { DBClusters: [step] };
  });
}

describe("the AWS provider's RDS calls (aws-sdk-client-mock)", () => {
  beforeEach(() => rds.reset());
  afterAll(() => rds.restore());

  it("creates an Aurora replica of the source: describe first, cluster then writer, tagged, waiting through not-found-after-create and throttling", async () => {
    const throttled = Object.assign(new Error("Rate exceeded"), { name: "Throttling" });
    instances({
      billing: [SOURCE],
      "billing-aurora-1": [
        notFound("instance"),
        notFound("instance"),
        throttled,
        {
          ...SOURCE,
          DBInstanceIdentifier: "billing-aurora-1",
          DBClusterIdentifier: "billing-aurora",
          DBInstanceStatus: "creating",
          TagList: ours,
        },
        {
          ...SOURCE,
          DBInstanceIdentifier: "billing-aurora-1",
          DBClusterIdentifier: "billing-aurora",
          DBInstanceStatus: "available",
          TagList: ours,
        },
      ],
    });
    clusters([
      notFound("cluster"),
      {
        DBClusterIdentifier: "billing-aurora",
        Status: "available",
        TagList: ours,
        ReplicationSourceIdentifier: SOURCE.DBInstanceArn,
      },
    ]);
    rds.on(CreateDBClusterCommand).resolves({});
    rds.on(CreateDBInstanceCommand).resolves({});
    const c = await control().ensureReplica(SPEC, 60_000);
    expect(c.Status).toBe("available");
    observed.PROVISIONING = collapse(sent());
    expect(sent()).toEqual([
      "DescribeDBInstances",
      "DescribeDBClusters",
      "CreateDBCluster",
      "DescribeDBInstances",
      "CreateDBInstance",
      "DescribeDBInstances",
      "DescribeDBInstances",
      "DescribeDBInstances",
      "DescribeDBInstances",
      "DescribeDBClusters",
    ]);
    const create = rds.commandCalls(CreateDBClusterCommand)[0]!.args[0].input;
    expect(create).toMatchObject({
      DBClusterIdentifier: "billing-aurora",
      Engine: "aurora-postgresql",
      EngineVersion: "15.8",
      ReplicationSourceIdentifier: SOURCE.DBInstanceArn,
      VpcSecurityGroupIds: ["sg-app"],
      DBSubnetGroupName: "private",
      StorageEncrypted: true,
      KmsKeyId: SOURCE.KmsKeyId,
      Tags: [
        { Key: OWNER_TAG, Value: "m-1" },
        { Key: SOURCE_TAG, Value: "billing" },
      ],
    });
    expect(rds.commandCalls(CreateDBInstanceCommand)[0]!.args[0].input).toMatchObject({
      DBClusterIdentifier: "billing-aurora",
      Engine: "aurora-postgresql",
      Tags: [
        { Key: OWNER_TAG, Value: "m-1" },
        { Key: SOURCE_TAG, Value: "billing" },
      ],
    });
  });

  it("resumed after dying between the two creates, it creates only the writer", async () => {
    instances({
      billing: [SOURCE],
      "billing-aurora-1": [
        notFound("instance"),
        {
          DBInstanceIdentifier: "billing-aurora-1",
          DBClusterIdentifier: "billing-aurora",
          DBInstanceStatus: "available",
          TagList: ours,
        },
      ],
    });
    clusters([{ DBClusterIdentifier: "billing-aurora", Status: "available", TagList: ours }]);
    rds.on(CreateDBInstanceCommand).resolves({});
    await control().ensureReplica(SPEC, 60_000);
    expect(sent().filter((n) => n.startsWith("Create"))).toEqual(["CreateDBInstance"]);
  });

  it("never adopts a cluster it did not create, and deletes only what carries its tag", async () => {
    instances({ billing: [SOURCE] });
    clusters([
      {
        DBClusterIdentifier: "billing-aurora",
        Status: "available",
        TagList: [{ Key: OWNER_TAG, Value: "someone-else" }],
      },
    ]);
    await expect(control().ensureReplica(SPEC, 60_000)).rejects.toMatchObject({
      message: expect.stringContaining("someone-else"),
    });
    expect(await control().deleteReplica("billing-aurora", "billing-aurora-1", "m-1")).toBe("not-ours");
    expect(sent().filter((n) => /^(Create|Delete)/.test(n))).toEqual([]);

    rds.reset();
    instances({
      "billing-aurora-1": [{ DBInstanceIdentifier: "billing-aurora-1", DBInstanceStatus: "available", TagList: ours }],
    });
    clusters([{ DBClusterIdentifier: "billing-aurora", Status: "available", TagList: ours }]);
    rds.on(DeleteDBInstanceCommand).resolves({});
    rds.on(DeleteDBClusterCommand).resolves({});
    expect(await control().deleteReplica("billing-aurora", "billing-aurora-1", "m-1")).toBe("deleted");
    expect(sent().filter((n) => n.startsWith("Delete"))).toEqual(["DeleteDBInstance", "DeleteDBCluster"]);
  });

  it("promotes once: a cluster already promoted is left alone", async () => {
    clusters([
      { DBClusterIdentifier: "billing-aurora", Status: "available", ReplicationSourceIdentifier: SOURCE.DBInstanceArn },
      { DBClusterIdentifier: "billing-aurora", Status: "promoting" },
      { DBClusterIdentifier: "billing-aurora", Status: "available" },
    ]);
    rds.on(PromoteReadReplicaDBClusterCommand).resolves({});
    await control().promote("billing-aurora", 60_000);
    await control().promote("billing-aurora", 60_000);
    expect(sent().filter((n) => n === "PromoteReadReplicaDBCluster")).toHaveLength(1);
  });

  it("the network fence swaps in the deny-all group and reboots; unfence restores exactly the recorded groups; retire stops, never deletes", async () => {
    instances({
      billing: [
        SOURCE,
        { ...SOURCE, DBInstanceStatus: "modifying" },
        SOURCE,
        { ...SOURCE, DBInstanceStatus: "rebooting" },
        { ...SOURCE, VpcSecurityGroups: [{ VpcSecurityGroupId: "sg-deny" }] },
      ],
    });
    rds.on(ModifyDBInstanceCommand).resolves({});
    rds.on(RebootDBInstanceCommand).resolves({});
    rds.on(StopDBInstanceCommand).resolves({});
    const recorded = await control().networkFence("billing", "sg-deny", 60_000);
    expect(recorded).toEqual(["sg-app"]);
    observed.QUIESCING = collapse(sent());
    expect(rds.commandCalls(ModifyDBInstanceCommand)[0]!.args[0].input).toMatchObject({
      VpcSecurityGroupIds: ["sg-deny"],
      ApplyImmediately: true,
    });
    await control().networkUnfence("billing", recorded, 60_000);
    expect(rds.commandCalls(ModifyDBInstanceCommand)[1]!.args[0].input).toMatchObject({
      VpcSecurityGroupIds: ["sg-app"],
    });
    await control().retire("billing", "stop", "pgshift-final-m1");
    expect(sent().filter((n) => !n.startsWith("Describe"))).toEqual([
      "ModifyDBInstance",
      "RebootDBInstance",
      "ModifyDBInstance",
      "StopDBInstance",
    ]);
    // Stopped after a final snapshot, so that nothing is lost if the instance is ever deleted.
    expect(rds.commandCalls(StopDBInstanceCommand)[0]!.args[0].input).toEqual({
      DBInstanceIdentifier: "billing",
      DBSnapshotIdentifier: "pgshift-final-m1",
    });
  });

  it("retires by deletion only when asked, after a final snapshot; a source deleted already is left as it is", async () => {
    rds
      .on(DescribeDBInstancesCommand)
      .resolvesOnce({ DBInstances: [SOURCE] })
      .resolves({ DBInstances: [{ ...SOURCE, DBInstanceStatus: "deleting" }] });
    rds.on(DeleteDBInstanceCommand).resolves({});
    expect(await control().retire("billing", "delete", "pgshift-final-m2")).toBe(
      "billing deleted after its final snapshot pgshift-final-m2",
    );
    expect(rds.commandCalls(DeleteDBInstanceCommand)[0]!.args[0].input).toEqual({
      DBInstanceIdentifier: "billing",
      SkipFinalSnapshot: false,
      FinalDBSnapshotIdentifier: "pgshift-final-m2",
      DeleteAutomatedBackups: false,
    });
    expect(await control().retire("billing", "delete", "pgshift-final-m2")).toBe("billing is deleted already");
    expect(rds.commandCalls(DeleteDBInstanceCommand)).toHaveLength(1);
    expect(
      awsPlan({ replica: SPEC, fence: "sql", retirement: "delete" })
        .filter((p) => p.phase === "FINALIZED")
        .map((p) => p.action),
    ).toEqual(["rds:DescribeDBInstances", "rds:DeleteDBInstance", "rds:CreateDBSnapshot"]);
  });

  it("the plan lists the calls RdsControl makes, in its order, and the IAM policy grants each", () => {
    const plan = awsPlan({ replica: SPEC, fence: "network", denyGroup: "sg-deny" });
    const of = (phase: string) =>
      plan.filter((p) => p.phase === phase && p.action.startsWith("rds:")).map((p) => p.action.replace(/^rds:/, ""));
    expect(of("PROVISIONING")).toEqual(observed.PROVISIONING);
    // The fence's record (a tag) is written by the provider before RdsControl's calls.
    expect(of("QUIESCING")).toEqual(["AddTagsToResource", ...observed.QUIESCING!]);
    expect(of("PROMOTING")).toEqual(["DescribeDBClusters", "PromoteReadReplicaDBCluster", "DescribeDBClusters"]);
    // The SQL fence makes no AWS call at cutover.
    expect(
      awsPlan({ replica: SPEC, fence: "sql" })
        .filter((p) => p.phase === "QUIESCING")
        .map((p) => p.action),
    ).toEqual(["rds:AddTagsToResource"]);
    const policy = JSON.parse(readFileSync(resolve(import.meta.dirname, "../../deploy/aws/iam-policy.json"), "utf8"));
    const granted = new Set(policy.Statement.flatMap((s: { Action: string[] }) => s.Action));
    expect(plan.filter((p) => !granted.has(p.action))).toEqual([]);
    // Every call, not only RDS's: the master user's secret is read before the first statement; an encrypted source's
    // key is used through RDS when the replica is created, and the policy grants that only through RDS.
    expect(plan.filter((p) => p.phase === "PREFLIGHT").map((p) => p.action)).toContain("secretsmanager:GetSecretValue");
    expect(plan.filter((p) => p.action.startsWith("kms:")).map((p) => p.action)).toEqual([
      "kms:DescribeKey",
      "kms:CreateGrant",
    ]);
    const kms = policy.Statement.find((s: { Action: string[] }) => s.Action.includes("kms:CreateGrant"));
    expect(kms.Condition.StringLike["kms:ViaService"]).toBe("rds.*.amazonaws.com");
    const withCloudWatch = awsPlan({ replica: SPEC, fence: "sql", cloudwatch: true }).filter(
      (p) => p.phase === "REPLICATING",
    );
    expect(withCloudWatch.map((p) => p.action)).toEqual(["cloudwatch:GetMetricData"]);
    expect(withCloudWatch.filter((p) => !granted.has(p.action))).toEqual([]);
  });

  it("a fence's record: one tag set on the resource, removed by key once undone", async () => {
    rds.on(AddTagsToResourceCommand).resolves({});
    rds.on(RemoveTagsFromResourceCommand).resolves({});
    await control().tag(SOURCE.DBInstanceArn!, "pgshift:fenced-roles", "app reporting");
    await control().untag(SOURCE.DBInstanceArn!, ["pgshift:fenced-roles"]);
    expect(rds.commandCalls(AddTagsToResourceCommand)[0]!.args[0].input).toEqual({
      ResourceName: SOURCE.DBInstanceArn,
      Tags: [{ Key: "pgshift:fenced-roles", Value: "app reporting" }],
    });
    expect(rds.commandCalls(RemoveTagsFromResourceCommand)[0]!.args[0].input).toEqual({
      ResourceName: SOURCE.DBInstanceArn,
      TagKeys: ["pgshift:fenced-roles"],
    });
    sent();
  });

  it("preflight: the engine version Aurora offers, logical decoding in the cluster parameter group (all pages), parameters set on the source, the fence", async () => {
    const withGroup: DBInstance = { ...SOURCE, DBParameterGroups: [{ DBParameterGroupName: "billing-params" }] };
    rds
      .on(DescribeDBEngineVersionsCommand)
      .callsFake((input: { EngineVersion?: string; DBParameterGroupFamily?: string }) => ({
        DBEngineVersions: input.EngineVersion === "15.8" ? [] : [{ EngineVersion: "15.6" }, { EngineVersion: "15.10" }],
      }));
    // Two pages: the setting that matters is on the second.
    rds
      .on(DescribeDBClusterParametersCommand)
      .callsFake((input: { DBClusterParameterGroupName: string; Marker?: string }) => {
        if (input.DBClusterParameterGroupName !== "logical")
          throw new DBParameterGroupNotFoundFault({ message: "not found", $metadata: {} });
        return input.Marker
          ? { Parameters: [{ ParameterName: "rds.logical_replication", ParameterValue: "1" }] }
          : { Parameters: [{ ParameterName: "work_mem", ParameterValue: "65536" }], Marker: "p2" };
      });
    rds.on(DescribeDBParametersCommand).resolves({
      Parameters: [
        { ParameterName: "work_mem", ParameterValue: "65536", Source: "user" },
        { ParameterName: "shared_preload_libraries", ParameterValue: "pg_stat_statements", Source: "user" },
      ],
    });
    const verdicts = async (o: Partial<Parameters<typeof awsPreflight>[1]>) =>
      Object.fromEntries(
        (
          await awsPreflight(control(), {
            source: withGroup,
            fence: "sql",
            applicationRoles: ["app"],
            unfencedRoles: ["postgres"],
            database: "billing-db",
            clusterParameterGroup: "logical",
            ...o,
          } as Parameters<typeof awsPreflight>[1])
        ).map((c) => [c.name, c]),
      );
    const v = await verdicts({});
    // Aurora has no 15.8 here: fail, naming the versions to upgrade the source to.
    expect(v["aws.engine_version"]).toMatchObject({ status: "FAIL", remedy: expect.stringContaining("15.6, 15.10") });
    expect(v["aws.logical_replication"]).toMatchObject({
      status: "PASS",
      measured: "rds.logical_replication = 1 in logical",
    });
    expect(v["aws.parameter_groups"]).toMatchObject({
      status: "WARN",
      measured: "shared_preload_libraries: pg_stat_statements -> engine default",
    });
    expect(v["aws.fence"]).toMatchObject({ status: "PASS", measured: "roles fence: app lose LOGIN at cutover" });
    // Untagged, the source is one the IAM policy lets pgshift neither fence nor retire: said, with the command that tags it.
    expect(v["aws.source_tag"]).toMatchObject({
      status: "FAIL",
      measured: expect.stringContaining("has no pgshift:database tag"),
      remedy: expect.stringContaining("Key=pgshift:database,Value=billing-db"),
    });
    // The master user keeps LOGIN under the roles fence: said by name, with the remedy.
    expect(v["fence.unfenced_roles"]).toMatchObject({
      status: "WARN",
      measured: "postgres keep LOGIN under the roles fence",
      remedy: expect.stringContaining("FENCE_MODE_NETWORK"),
    });
    expect(rds.commandCalls(DescribeDBParametersCommand)[0]!.args[0].input).toMatchObject({
      DBParameterGroupName: "billing-params",
      Source: "user",
    });
    // The engine's default group (no name given) does not exist in this mock: said so, with the remedy.
    expect((await verdicts({ clusterParameterGroup: undefined }))["aws.logical_replication"]).toMatchObject({
      status: "FAIL",
      measured: "DB cluster parameter group default.aurora-postgresql15 does not exist",
    });
    // The network fence needs the deny-all group; too many roles do not fit the tag the roles fence records them in.
    expect((await verdicts({ fence: "network" }))["aws.fence"]).toMatchObject({
      status: "FAIL",
      remedy: expect.stringContaining("--aws-deny-security-group"),
    });
    expect((await verdicts({ fence: "network", denySecurityGroup: "sg-deny" }))["aws.fence"]?.status).toBe("PASS");
    const many = Array.from({ length: 40 }, (_, i) => `application_role_${i}`);
    expect(many.join(" ").length).toBeGreaterThan(TAG_VALUE_MAX);
    expect((await verdicts({ applicationRoles: many }))["aws.fence"]).toMatchObject({
      status: "FAIL",
      remedy: "use FENCE_MODE_NETWORK for this migration",
    });
    expect((await verdicts({ applicationRoles: [] }))["aws.fence"]?.status).toBe("WARN");
    sent();
  });

  it("deploy/aws/iam-policy.json grants exactly the RDS actions made (and what AWS requires alongside them)", () => {
    const policy = JSON.parse(readFileSync(resolve(import.meta.dirname, "../../deploy/aws/iam-policy.json"), "utf8"));
    const granted = new Set<string>(
      policy.Statement.flatMap((s: { Effect: string; Action: string[] }) =>
        s.Effect === "Allow" ? s.Action : [],
      ).filter((a: string) => a.startsWith("rds:")),
    );
    // Tags given to a create call need their own permission, and so does the final snapshot a stop or a delete takes.
    const needed = new Set([
      ...made,
      ...(made.has("rds:CreateDBCluster") ? ["rds:AddTagsToResource"] : []),
      ...(made.has("rds:StopDBInstance") ? ["rds:CreateDBSnapshot"] : []),
    ]);
    expect(needed.size).toBeGreaterThan(5);
    expect(
      [...needed].filter((a) => !granted.has(a)),
      "made but not granted",
    ).toEqual([]);
    expect(
      [...granted].filter((a) => !needed.has(a)),
      "granted but never made",
    ).toEqual([]);
    for (const s of policy.Statement) expect(JSON.stringify(s.Action)).not.toContain("*");
    // Deleting and promoting are granted only on resources carrying the owner tag.
    const change = policy.Statement.find((s: { Action: string[] }) => s.Action.includes("rds:DeleteDBCluster"));
    expect(change.Condition.Null[`aws:ResourceTag/${OWNER_TAG}`]).toBe("false");
    // Fencing and retiring a source are granted only on instances the platform tagged with the database they serve.
    const source = policy.Statement.find((s: { Action: string[] }) => s.Action.includes("rds:StopDBInstance"));
    expect(source.Condition.StringLike["aws:ResourceTag/pgshift:database"]).toBe("?*");
  });
});
