import type { ReplicaSpec } from "./rds-control.js";

/** One AWS call a migration will make: in which phase, the IAM action, on what, and why. */
export interface PlannedCall {
  phase: string;
  action: string;
  resource: string;
  why: string;
}

export interface AwsPlanOptions {
  replica: ReplicaSpec;
  /** How writes to the source are stopped at cutover: SQL (roles lose LOGIN) or a deny-all security group and a reboot. */
  fence: "sql" | "network";
  /** The deny-all security group, for the network fence. */
  denyGroup?: string;
  /** Whether the service reads CloudWatch (--aws-cloudwatch). */
  cloudwatch?: boolean;
  /** How finalize retires the source (the spec's source_retirement; stop unless it says delete). */
  retirement?: "stop" | "delete";
}

/**
 * The AWS calls a migration makes, in order, without making any: what an operator reviews before starting one, and
 * what the IAM policy must grant. It follows RdsControl call for call (its contract tests hold it to that); the
 * repeated describes of a wait are shown once, as "until".
 */
export function awsPlan(o: AwsPlanOptions): PlannedCall[] {
  const { sourceId, clusterId, instanceId } = o.replica;
  const call = (phase: string, action: string, resource: string, why: string): PlannedCall => ({
    phase,
    action: `rds:${action}`,
    resource,
    why,
  });
  const network = o.fence === "network";
  return [
    call(
      "PREFLIGHT",
      "DescribeDBInstances",
      sourceId,
      "the source exists: engine, version, status, parameter group, security groups, storage",
    ),
    call("PREFLIGHT", "DescribeDBClusters", clusterId, "the target does not exist yet (pgshift never adopts one)"),
    call(
      "PREFLIGHT",
      "DescribeDBEngineVersions",
      "aurora-postgresql",
      `Aurora offers the source's engine version (${o.replica.engineVersion})`,
    ),
    call(
      "PREFLIGHT",
      "DescribeDBClusterParameters",
      o.replica.clusterParameterGroup ?? "default.aurora-postgresqlNN",
      "rds.logical_replication = 1 (reverse replication, CDC slots), and the values to compare",
    ),
    call(
      "PREFLIGHT",
      "DescribeDBParameters",
      "the source's DB parameter group",
      "what an operator set on the source (Source = user), to compare",
    ),
    {
      phase: "PREFLIGHT",
      action: "secretsmanager:GetSecretValue",
      resource: `the RDS-managed master user secrets (rds!…) of ${sourceId}, then of ${clusterId}`,
      why: "SQL as the master user from here on (schema checks, fences, CDC, reverse replication), each reused for a minute; reverse replication's subscription keeps the target's",
    },
    call(
      "PROVISIONING",
      "DescribeDBInstances",
      sourceId,
      "the source's ARN, subnet group, security groups and encryption for the replica",
    ),
    call("PROVISIONING", "DescribeDBClusters", clusterId, "describe before create: a resumed step never creates twice"),
    ...(["kms:DescribeKey", "kms:CreateGrant"] as const).map((action) => ({
      phase: "PROVISIONING",
      action,
      resource: `the source's KMS key, when ${sourceId} is encrypted with a customer managed key`,
      why: "RDS uses the key on pgshift's behalf to encrypt the replica as the source is (granted only through RDS: kms:ViaService)",
    })),
    call(
      "PROVISIONING",
      "CreateDBCluster",
      clusterId,
      `aurora-postgresql ${o.replica.engineVersion}, ReplicationSourceIdentifier = ${sourceId}'s ARN, tagged pgshift:migration-id`,
    ),
    call("PROVISIONING", "DescribeDBInstances", instanceId, "describe before create"),
    call(
      "PROVISIONING",
      "CreateDBInstance",
      instanceId,
      `the writer, ${o.replica.instanceClass}, in ${clusterId}, tagged`,
    ),
    call("PROVISIONING", "DescribeDBInstances", instanceId, "until available"),
    call("PROVISIONING", "DescribeDBClusters", clusterId, "until available"),
    ...(o.cloudwatch
      ? [
          {
            phase: "REPLICATING",
            action: "cloudwatch:GetMetricData",
            resource: `${clusterId}, ${sourceId}`,
            why: "RDSToAuroraPostgreSQLReplicaLag (counts in the lag gate), OldestReplicationSlotLag, TransactionLogsDiskUsage; once a minute at most",
          },
        ]
      : []),
    call(
      "QUIESCING",
      "AddTagsToResource",
      sourceId,
      network
        ? "pgshift:pre-fence-security-groups: the groups the fence replaces"
        : "pgshift:fenced-roles: the roles that lose LOGIN",
    ),
    ...(network
      ? [
          call(
            "QUIESCING",
            "DescribeDBInstances",
            sourceId,
            "record the source's security groups (restored on rollback)",
          ),
          call(
            "QUIESCING",
            "ModifyDBInstance",
            sourceId,
            `VpcSecurityGroupIds = [${o.denyGroup ?? "the deny-all group"}], ApplyImmediately`,
          ),
          call("QUIESCING", "DescribeDBInstances", sourceId, "until available"),
          call("QUIESCING", "RebootDBInstance", sourceId, "no session survives the fence"),
          call("QUIESCING", "DescribeDBInstances", sourceId, "until available"),
        ]
      : []),
    call("PROMOTING", "DescribeDBClusters", clusterId, "promote once: a promoted cluster is left as it is"),
    call("PROMOTING", "PromoteReadReplicaDBCluster", clusterId, "the replica becomes a standalone writable cluster"),
    call("PROMOTING", "DescribeDBClusters", clusterId, "until available with no replication source"),
    call(
      "ROLLING_BACK (if asked)",
      "AddTagsToResource",
      clusterId,
      "pgshift:fenced-roles: the promoted cluster's roles that lose LOGIN",
    ),
    ...(network
      ? [call("ROLLING_BACK (if asked)", "ModifyDBInstance", sourceId, "the recorded security groups back")]
      : []),
    call("ROLLING_BACK (if asked)", "RemoveTagsFromResource", sourceId, "the fence's record, once undone"),
    call(
      "ABORTED or FAILED before promotion",
      "DescribeDBClusters",
      clusterId,
      "only what carries this migration's tag is deleted",
    ),
    call("ABORTED or FAILED before promotion", "DescribeDBInstances", instanceId, "the same, for the writer"),
    call("ABORTED or FAILED before promotion", "DeleteDBInstance", instanceId, "the writer this migration created"),
    call(
      "ABORTED or FAILED before promotion",
      "DeleteDBCluster",
      clusterId,
      "the replica cluster this migration created (no final snapshot: the source is the truth)",
    ),
    call("FINALIZED", "DescribeDBInstances", sourceId, "the source's state"),
    ...(o.retirement === "delete"
      ? [
          call(
            "FINALIZED",
            "DeleteDBInstance",
            sourceId,
            "retire the old source as the spec says: deleted, FinalDBSnapshotIdentifier pgshift-final-<migration id>",
          ),
          call(
            "FINALIZED",
            "CreateDBSnapshot",
            sourceId,
            "the final snapshot DeleteDBInstance takes (AWS checks this permission too)",
          ),
        ]
      : [
          call(
            "FINALIZED",
            "StopDBInstance",
            sourceId,
            "retire the old source: stopped, DBSnapshotIdentifier pgshift-final-<migration id>",
          ),
          call(
            "FINALIZED",
            "CreateDBSnapshot",
            sourceId,
            "the final snapshot StopDBInstance takes (AWS checks this permission too)",
          ),
          call(
            "FINALIZED, every hour after",
            "DescribeDBInstances",
            sourceId,
            "AWS starts a stopped instance after 7 days: is it running again?",
          ),
          call(
            "FINALIZED, every hour after",
            "StopDBInstance",
            sourceId,
            "if it is, stopped again (recorded as check retirement.source)",
          ),
        ]),
  ];
}
