import type { DBInstance, Parameter } from "@aws-sdk/client-rds";
import { check, type CheckResult } from "../../domain/check.js";
import type { RdsControl } from "./rds-control.js";

/** What the AWS checks look at, beyond the control plane itself. */
export interface AwsPreflightInput {
  source: DBInstance;
  /** The target's DB cluster parameter group; absent: the engine's default group. */
  clusterParameterGroup?: string;
  fence: "sql" | "network";
  denySecurityGroup?: string;
  /** The roles the SQL fence would take LOGIN from, as the source has them now. */
  applicationRoles: string[];
  /** The roles that keep LOGIN under the SQL fence: the master user, superusers, replication roles. */
  unfencedRoles: string[];
  /** The logical database the migration names: the source must be tagged as serving it. */
  database: string;
}

/**
 * The tag the platform puts on an instance pgshift may fence and retire: the IAM policy lets pgshift modify, reboot,
 * stop, snapshot or delete only instances that carry it, and preflight wants its value to be the migration's database.
 */
export const DATABASE_TAG = "pgshift:database";

/** A tag value holds at most 256 characters: the SQL fence records its roles in one. */
export const TAG_VALUE_MAX = 256;

/**
 * The checks only AWS can answer, before anything is created: is there an Aurora version to replicate into, does the
 * target's cluster parameter group allow logical decoding (reverse replication for a lossless rollback and CDC slots
 * on the target both need it), which parameters set on the source the target would not have, and can the chosen
 * fence work. Each says what to change.
 */
export async function awsPreflight(control: RdsControl, i: AwsPreflightInput): Promise<CheckResult[]> {
  const version = i.source.EngineVersion ?? "";
  const major = version.split(".")[0] ?? "";
  const family = `aurora-postgresql${major}`;
  const group = i.clusterParameterGroup ?? `default.${family}`;
  const [versions, clusterParams, sourceParams] = await Promise.all([
    control.auroraVersions({ version }),
    control.clusterParameters(group),
    i.source.DBParameterGroups?.[0]?.DBParameterGroupName
      ? control.userParameters(i.source.DBParameterGroups[0].DBParameterGroupName)
      : Promise.resolve([]),
  ]);
  return [
    await engineVersionCheck(control, version, family, versions),
    logicalReplicationCheck(group, clusterParams, Boolean(i.clusterParameterGroup)),
    parameterGroupCheck(
      i.source.DBParameterGroups?.[0]?.DBParameterGroupName ?? "",
      sourceParams ?? [],
      group,
      clusterParams,
    ),
    fenceCheck(i),
    ...(i.fence === "sql" ? [unfencedRolesCheck(i.unfencedRoles)] : []),
    sourceTagCheck(i),
  ];
}

async function engineVersionCheck(
  control: RdsControl,
  version: string,
  family: string,
  offered: string[],
): Promise<CheckResult> {
  if (offered.includes(version)) {
    return check("aws.engine_version", "PASS", {
      measured: `aurora-postgresql ${version} is offered`,
      threshold: "the source's engine version",
    });
  }
  const sameMajor = await control.auroraVersions({ family });
  return check("aws.engine_version", "FAIL", {
    measured: `source postgres ${version}; aurora-postgresql offers ${sameMajor.length ? sameMajor.join(", ") : `no ${family} version`} here`,
    threshold: "an aurora-postgresql version equal to the source's",
    message:
      "an Aurora read replica of an RDS instance runs the source's engine version, and Aurora does not offer it in this region",
    remedy: sameMajor.length
      ? `upgrade the source to a minor version Aurora offers (${sameMajor.join(", ")}) first`
      : `Aurora has no version of this major here: upgrade the source's major version first`,
  });
}

function logicalReplicationCheck(group: string, params: Parameter[] | undefined, named: boolean): CheckResult {
  const remedy = `create a DB cluster parameter group with rds.logical_replication = 1 and name it in spec.aws.cluster_parameter_group (or the service's --aws-cluster-parameter-group)`;
  if (!params) {
    return check("aws.logical_replication", "FAIL", {
      measured: `DB cluster parameter group ${group} does not exist`,
      threshold: "an existing group with rds.logical_replication = 1",
      message: named
        ? "the cluster parameter group the migration names does not exist"
        : "the engine's default cluster parameter group is not there",
      remedy,
    });
  }
  const value = params.find((p) => p.ParameterName === "rds.logical_replication")?.ParameterValue ?? "0";
  if (value === "1")
    return check("aws.logical_replication", "PASS", {
      measured: `rds.logical_replication = 1 in ${group}`,
      threshold: "1",
    });
  return check("aws.logical_replication", "FAIL", {
    measured: `rds.logical_replication = ${value} in ${group}`,
    threshold: "1",
    message:
      "the promoted Aurora cluster must decode its WAL: reverse replication to the source (a lossless rollback) and the CDC slots recreated on it need rds.logical_replication = 1",
    remedy,
  });
}

/** Parameters set on the source's group that the target's cluster group does not set to the same value. */
function parameterGroupCheck(
  sourceGroup: string,
  user: Parameter[],
  targetGroup: string,
  target: Parameter[] | undefined,
): CheckResult {
  const there = new Map((target ?? []).map((p) => [p.ParameterName!, p.ParameterValue]));
  const differ = user.filter(
    (p) => p.ParameterName !== "rds.logical_replication" && there.get(p.ParameterName!) !== p.ParameterValue,
  );
  if (differ.length === 0) {
    return check("aws.parameter_groups", "PASS", {
      measured: `${user.length} parameter(s) set in ${sourceGroup || "the source's group"}, all the same in ${targetGroup}`,
      threshold: "what the source sets, the target sets",
    });
  }
  return check("aws.parameter_groups", "WARN", {
    measured: differ
      .map((p) => `${p.ParameterName}: ${p.ParameterValue} -> ${there.get(p.ParameterName!) ?? "engine default"}`)
      .join("; "),
    threshold: "what the source sets, the target sets",
    message: `${differ.length} parameter(s) set on the source's group ${sourceGroup} differ in ${targetGroup}: the application would see other behaviour after cutover`,
    remedy: `set them in ${targetGroup} (instance-level ones in the writer's DB parameter group) before cutover, or accept the difference`,
  });
}

function fenceCheck(i: AwsPreflightInput): CheckResult {
  if (i.fence === "network") {
    return i.denySecurityGroup
      ? check("aws.fence", "PASS", {
          measured: `network fence: ${i.source.DBInstanceIdentifier} moves behind ${i.denySecurityGroup} and reboots at cutover`,
          threshold: "a deny-all security group",
        })
      : check("aws.fence", "FAIL", {
          measured: "network fence without a deny-all security group",
          threshold: "a deny-all security group",
          message:
            "the network fence moves the source behind a security group that admits nothing; the service has none configured",
          remedy: "start the service with --aws-deny-security-group sg-…, or use FENCE_MODE_ROLES",
        });
  }
  const names = i.applicationRoles.join(" ");
  if (names.length > TAG_VALUE_MAX) {
    return check("aws.fence", "FAIL", {
      measured: `${i.applicationRoles.length} application roles (${names.length} characters of names)`,
      threshold: `their names fit one tag (${TAG_VALUE_MAX} characters)`,
      message:
        "the roles fence records the roles it changes in a tag on the instance, so that any replica can restore exactly them",
      remedy: "use FENCE_MODE_NETWORK for this migration",
    });
  }
  return check("aws.fence", i.applicationRoles.length ? "PASS" : "WARN", {
    measured: i.applicationRoles.length
      ? `roles fence: ${names} lose LOGIN at cutover`
      : "no application role to fence",
    threshold: "at least one application role",
    message: i.applicationRoles.length
      ? ""
      : "every role that logs in is the master user, a superuser or a replication role: the roles fence would stop no writer",
    remedy: i.applicationRoles.length ? "" : "give the application its own role, or use FENCE_MODE_NETWORK",
  });
}

/**
 * The roles fence cannot take LOGIN from the master user (pgshift's own access), superusers or replication roles
 * (CDC consumers): their sessions are ended at the fence, but they can log in again. Said here, by name; a session of
 * theirs found before the final LSN or before promotion holds the cutover.
 */
function unfencedRolesCheck(roles: string[]): CheckResult {
  return check("fence.unfenced_roles", roles.length ? "WARN" : "PASS", {
    measured: roles.length
      ? `${roles.join(", ")} keep LOGIN under the roles fence`
      : "every role that logs in loses LOGIN at the fence",
    threshold: "no role an application writes through keeps LOGIN while the source is fenced",
    message: roles.length
      ? "their sessions are ended at the fence, but they can log in again; a session found before the final LSN or before promotion holds the cutover"
      : "",
    remedy: roles.length
      ? "give applications roles of their own (not the master user), or use FENCE_MODE_NETWORK, which refuses every client"
      : "",
  });
}

/** The source carries the platform's tag naming this database: without it, the IAM policy lets pgshift neither fence nor retire it. */
function sourceTagCheck(i: AwsPreflightInput): CheckResult {
  const id = i.source.DBInstanceIdentifier ?? "";
  const value = i.source.TagList?.find((t) => t.Key === DATABASE_TAG)?.Value;
  const remedy = `aws rds add-tags-to-resource --resource-name ${i.source.DBInstanceArn ?? id} --tags Key=${DATABASE_TAG},Value=${i.database}`;
  if (value === i.database) {
    return check("aws.source_tag", "PASS", {
      measured: `${id} is tagged ${DATABASE_TAG}=${value}`,
      threshold: `${DATABASE_TAG}=${i.database}`,
    });
  }
  return check("aws.source_tag", "FAIL", {
    measured: value === undefined ? `${id} has no ${DATABASE_TAG} tag` : `${id} is tagged ${DATABASE_TAG}=${value}`,
    threshold: `${DATABASE_TAG}=${i.database}`,
    message: `pgshift's IAM policy lets it fence and retire only instances tagged ${DATABASE_TAG}, and this one must be tagged as serving ${i.database}`,
    remedy:
      value === undefined ? `tag it: ${remedy}` : `it serves ${value}: name that database, or retag it: ${remedy}`,
  });
}
