import type { Retirement } from "../../domain/spec.js";
import {
  AddTagsToResourceCommand,
  CreateDBClusterCommand,
  CreateDBInstanceCommand,
  DeleteDBClusterCommand,
  DeleteDBInstanceCommand,
  DescribeDBClusterParametersCommand,
  DescribeDBClustersCommand,
  DescribeDBEngineVersionsCommand,
  DescribeDBParametersCommand,
  DescribeDBInstancesCommand,
  ModifyDBInstanceCommand,
  PromoteReadReplicaDBClusterCommand,
  RebootDBInstanceCommand,
  RemoveTagsFromResourceCommand,
  StopDBInstanceCommand,
  type DBCluster,
  type DBInstance,
  type Parameter,
  type RDSClient,
  type Tag,
} from "@aws-sdk/client-rds";
import { DeadlineExceededError, FailedPreconditionError, NotFoundError } from "../../domain/errors.js";
import { awsFaultName, isThrottled, withTypedErrors } from "./aws-errors.js";

/** The tag every resource pgshift creates carries: the id of the migration that created it. */
export const OWNER_TAG = "pgshift:migration-id";
/** On a replica cluster: the RDS instance it was made from (whose master secret it shares). */
export const SOURCE_TAG = "pgshift:source";

/** What an Aurora replica of an RDS for PostgreSQL instance is made of. */
export interface ReplicaSpec {
  /** The source instance (its ARN is read from DescribeDBInstances). */
  sourceId: string;
  /** The Aurora cluster to create, and its writer instance. */
  clusterId: string;
  instanceId: string;
  instanceClass: string;
  engineVersion: string;
  clusterParameterGroup?: string;
  /** The migration that owns what is created. */
  owner: string;
}

export interface RdsControlOptions {
  /** Between two looks at a resource that is changing state. */
  pollMs?: number;
  /** How long a resource may stay not found just after its creation (the API is eventually consistent). */
  notFoundGraceMs?: number;
  sleep?: (ms: number) => Promise<void>;
}

const isNotFound = (e: unknown) => /NotFound/.test(awsFaultName(e));
/** A describe call's answer, or undefined where AWS says the resource does not exist. */
async function absentIfNotFound<T>(describe: () => Promise<T | undefined>): Promise<T | undefined> {
  try {
    return await describe();
  } catch (e) {
    if (isNotFound(e)) return undefined;
    throw e;
  }
}

const ownedBy = (tags: Tag[] | undefined, owner: string) =>
  (tags ?? []).some((t) => t.Key === OWNER_TAG && t.Value === owner);
const ownerOf = (tags: Tag[] | undefined) => (tags ?? []).find((t) => t.Key === OWNER_TAG)?.Value;

/**
 * The RDS control-plane calls the AWS provider makes, each idempotent: it describes before it creates, so a retried
 * or resumed step never creates twice, and it deletes, stops or fences only what it is told to and, for deletion,
 * only what carries its migration's tag. Throttling is retried by the SDK itself (its standard retry strategy).
 */
export class RdsControl {
  private readonly pollMs: number;
  private readonly graceMs: number;
  private readonly sleep: (ms: number) => Promise<void>;
  /** Every call's fault arrives as the engine's typed error (aws-errors.ts). */
  private readonly rds: RDSClient;

  constructor(rds: RDSClient, opts: RdsControlOptions = {}) {
    this.rds = withTypedErrors("rds", rds);
    this.pollMs = opts.pollMs ?? 5_000;
    this.graceMs = opts.notFoundGraceMs ?? 60_000;
    this.sleep = opts.sleep ?? ((ms) => new Promise((r) => setTimeout(r, ms)));
  }

  async instance(id: string): Promise<DBInstance | undefined> {
    return absentIfNotFound(
      async () => (await this.rds.send(new DescribeDBInstancesCommand({ DBInstanceIdentifier: id }))).DBInstances?.[0],
    );
  }

  async cluster(id: string): Promise<DBCluster | undefined> {
    return absentIfNotFound(
      async () => (await this.rds.send(new DescribeDBClustersCommand({ DBClusterIdentifier: id }))).DBClusters?.[0],
    );
  }

  /** The aurora-postgresql versions offered in the region: the one asked for, or all of a parameter group family. */
  async auroraVersions(q: { version?: string; family?: string }): Promise<string[]> {
    // Every page: Aurora offers more versions than one answer holds.
    const versions = await this.pages((Marker) =>
      this.rds
        .send(
          new DescribeDBEngineVersionsCommand({
            Engine: "aurora-postgresql",
            EngineVersion: q.version,
            DBParameterGroupFamily: q.family,
            Marker,
          }),
        )
        .then((r) => ({ items: r.DBEngineVersions, Marker: r.Marker })),
    );
    return versions.map((v) => v.EngineVersion!).filter(Boolean);
  }

  /** Every parameter of a DB cluster parameter group (all pages), or undefined where the group does not exist. */
  clusterParameters(group: string): Promise<Parameter[] | undefined> {
    return absentIfNotFound(() =>
      this.pages((Marker) =>
        this.rds
          .send(new DescribeDBClusterParametersCommand({ DBClusterParameterGroupName: group, Marker }))
          .then((r) => ({ items: r.Parameters, Marker: r.Marker })),
      ),
    );
  }

  /** The parameters an operator set in a DB parameter group (Source "user"), all pages. */
  userParameters(group: string): Promise<Parameter[] | undefined> {
    return absentIfNotFound(() =>
      this.pages((Marker) =>
        this.rds
          .send(new DescribeDBParametersCommand({ DBParameterGroupName: group, Source: "user", Marker }))
          .then((r) => ({ items: r.Parameters, Marker: r.Marker })),
      ),
    );
  }

  /** Every record of a paged Describe, following its Marker. */
  private async pages<T>(
    page: (marker: string | undefined) => Promise<{ items?: T[]; Marker?: string }>,
  ): Promise<T[]> {
    const out: T[] = [];
    let marker: string | undefined;
    do {
      const r = await page(marker);
      out.push(...(r.items ?? []));
      marker = r.Marker;
    } while (marker);
    return out;
  }

  /** Sets one tag on a resource (what a fence records before it changes anything). */
  async tag(arn: string, key: string, value: string): Promise<void> {
    await this.rds.send(new AddTagsToResourceCommand({ ResourceName: arn, Tags: [{ Key: key, Value: value }] }));
  }

  /** Removes tags from a resource (a fence's record, once undone). */
  async untag(arn: string, keys: string[]): Promise<void> {
    await this.rds.send(new RemoveTagsFromResourceCommand({ ResourceName: arn, TagKeys: keys }));
  }

  /** The source instance, which must exist. */
  async source(id: string): Promise<DBInstance> {
    const i = await this.instance(id);
    if (!i)
      throw new NotFoundError(
        `RDS instance "${id}" does not exist (DescribeDBInstances): check spec.source.id and the region`,
      );
    return i;
  }

  /**
   * Creates (or resumes) the Aurora PostgreSQL cluster replicating the source, and its writer instance, both tagged
   * with the owner; returns once both are available. Refuses a cluster or instance of that name not tagged as the
   * owner's.
   */
  async ensureReplica(spec: ReplicaSpec, timeoutMs: number): Promise<DBCluster> {
    const deadline = Date.now() + timeoutMs;
    const source = await this.source(spec.sourceId);
    const tags: Tag[] = [
      { Key: OWNER_TAG, Value: spec.owner },
      { Key: SOURCE_TAG, Value: spec.sourceId },
    ];
    const existing = await this.cluster(spec.clusterId);
    if (existing && !ownedBy(existing.TagList, spec.owner)) {
      throw new FailedPreconditionError(
        `Aurora cluster "${spec.clusterId}" exists and is not this migration's (tag ${OWNER_TAG}=${ownerOf(existing.TagList) ?? "absent"}): pgshift never adopts a cluster it did not create; name a new target`,
      );
    }
    if (!existing) {
      await this.rds.send(
        new CreateDBClusterCommand({
          DBClusterIdentifier: spec.clusterId,
          Engine: "aurora-postgresql",
          EngineVersion: spec.engineVersion,
          ReplicationSourceIdentifier: source.DBInstanceArn,
          DBClusterParameterGroupName: spec.clusterParameterGroup,
          VpcSecurityGroupIds: (source.VpcSecurityGroups ?? []).map((g) => g.VpcSecurityGroupId!).filter(Boolean),
          DBSubnetGroupName: source.DBSubnetGroup?.DBSubnetGroupName,
          StorageEncrypted: source.StorageEncrypted,
          KmsKeyId: source.StorageEncrypted ? source.KmsKeyId : undefined,
          Tags: tags,
        }),
      );
    }
    const writer = await this.instance(spec.instanceId);
    if (writer && (writer.DBClusterIdentifier !== spec.clusterId || !ownedBy(writer.TagList, spec.owner))) {
      throw new FailedPreconditionError(
        `RDS instance "${spec.instanceId}" exists and is not this migration's writer: name a new target`,
      );
    }
    if (!writer) {
      await this.rds.send(
        new CreateDBInstanceCommand({
          DBInstanceIdentifier: spec.instanceId,
          DBClusterIdentifier: spec.clusterId,
          Engine: "aurora-postgresql",
          DBInstanceClass: spec.instanceClass,
          Tags: tags,
        }),
      );
    }
    await this.waitInstance(
      spec.instanceId,
      (i) => i.DBInstanceStatus === "available",
      deadline,
      "the writer instance to be available",
    );
    return this.waitCluster(
      spec.clusterId,
      (c) => c.Status === "available",
      deadline,
      "the replica cluster to be available",
    );
  }

  /** Promotes the replica cluster to a standalone writable cluster; a cluster already promoted is left as it is. */
  async promote(clusterId: string, timeoutMs: number): Promise<DBCluster> {
    const deadline = Date.now() + timeoutMs;
    const c = await this.cluster(clusterId);
    if (!c) throw new NotFoundError(`Aurora cluster "${clusterId}" does not exist: nothing to promote`);
    if (c.ReplicationSourceIdentifier)
      await this.rds.send(new PromoteReadReplicaDBClusterCommand({ DBClusterIdentifier: clusterId }));
    return this.waitCluster(
      clusterId,
      (x) => x.Status === "available" && !x.ReplicationSourceIdentifier,
      deadline,
      "the promoted cluster to be available",
    );
  }

  /** Moves the instance behind the given security groups and reboots it so no session survives; returns the groups it had. */
  async networkFence(instanceId: string, denyGroupId: string, timeoutMs: number): Promise<string[]> {
    const deadline = Date.now() + timeoutMs;
    const before = (await this.source(instanceId)).VpcSecurityGroups?.map((g) => g.VpcSecurityGroupId!) ?? [];
    if (!(before.length === 1 && before[0] === denyGroupId)) {
      await this.rds.send(
        new ModifyDBInstanceCommand({
          DBInstanceIdentifier: instanceId,
          VpcSecurityGroupIds: [denyGroupId],
          ApplyImmediately: true,
        }),
      );
      await this.waitInstance(
        instanceId,
        (i) => i.DBInstanceStatus === "available",
        deadline,
        "the security group change",
      );
      await this.rds.send(new RebootDBInstanceCommand({ DBInstanceIdentifier: instanceId }));
      await this.waitInstance(
        instanceId,
        (i) => i.DBInstanceStatus === "available",
        deadline,
        "the reboot that ends every session",
      );
    }
    return before;
  }

  /** Restores the security groups recorded by networkFence. */
  async networkUnfence(instanceId: string, groups: string[], timeoutMs: number): Promise<void> {
    const now = (await this.source(instanceId)).VpcSecurityGroups?.map((g) => g.VpcSecurityGroupId!) ?? [];
    if (now.length === groups.length && now.every((g) => groups.includes(g))) return;
    await this.rds.send(
      new ModifyDBInstanceCommand({
        DBInstanceIdentifier: instanceId,
        VpcSecurityGroupIds: groups,
        ApplyImmediately: true,
      }),
    );
    await this.waitInstance(
      instanceId,
      (i) => i.DBInstanceStatus === "available",
      Date.now() + timeoutMs,
      "the security groups to be restored",
    );
  }

  /**
   * Retires the old source once a migration is finalized, after a final snapshot: stopped (AWS takes the snapshot as
   * it stops), or deleted where the spec says so (AWS takes it before deleting). Done already: said so.
   */
  async retire(instanceId: string, how: Retirement, snapshot: string): Promise<string> {
    const i = await this.instance(instanceId);
    if (!i || i.DBInstanceStatus === "deleting") return `${instanceId} is deleted already`;
    if (how === "delete") {
      await this.rds.send(
        new DeleteDBInstanceCommand({
          DBInstanceIdentifier: instanceId,
          SkipFinalSnapshot: false,
          FinalDBSnapshotIdentifier: snapshot,
          DeleteAutomatedBackups: false,
        }),
      );
      return `${instanceId} deleted after its final snapshot ${snapshot}`;
    }
    if (i.DBInstanceStatus === "stopped" || i.DBInstanceStatus === "stopping")
      return `${instanceId} is stopped already`;
    await this.rds.send(
      new StopDBInstanceCommand({ DBInstanceIdentifier: instanceId, DBSnapshotIdentifier: snapshot }),
    );
    return `${instanceId} stopped after its final snapshot ${snapshot}; AWS starts a stopped instance after 7 days, and pgshift stops it again each time`;
  }

  /** A retired source AWS started again (it does after 7 days stopped) is stopped again; said, or undefined. */
  async keepStopped(instanceId: string): Promise<string | undefined> {
    const i = await this.instance(instanceId);
    // Starting: stopped on the next look, once available (StopDBInstance refuses an instance still starting).
    if (!i || i.DBInstanceStatus !== "available") return undefined;
    await this.rds.send(new StopDBInstanceCommand({ DBInstanceIdentifier: instanceId }));
    return `${instanceId} was available again (AWS starts a stopped instance after 7 days); stopped again`;
  }

  /** Deletes the replica cluster and its writer, only if they carry the owner's tag. */
  async deleteReplica(
    clusterId: string,
    instanceId: string,
    owner: string,
  ): Promise<"deleted" | "absent" | "not-ours"> {
    const c = await this.cluster(clusterId);
    const i = await this.instance(instanceId);
    if (!c && !i) return "absent";
    if ((c && !ownedBy(c.TagList, owner)) || (i && !ownedBy(i.TagList, owner))) return "not-ours";
    if (i && i.DBInstanceStatus !== "deleting")
      await this.rds.send(new DeleteDBInstanceCommand({ DBInstanceIdentifier: instanceId, SkipFinalSnapshot: true }));
    // A replica holds no data of its own: the source is the truth until promotion, so no final snapshot.
    if (c && c.Status !== "deleting")
      await this.rds.send(new DeleteDBClusterCommand({ DBClusterIdentifier: clusterId, SkipFinalSnapshot: true }));
    return "deleted";
  }

  private async waitInstance(
    id: string,
    done: (i: DBInstance) => boolean,
    deadline: number,
    what: string,
  ): Promise<DBInstance> {
    return this.waitFor(() => this.instance(id), done, deadline, what, `instance ${id}`);
  }

  private async waitCluster(
    id: string,
    done: (c: DBCluster) => boolean,
    deadline: number,
    what: string,
  ): Promise<DBCluster> {
    return this.waitFor(() => this.cluster(id), done, deadline, what, `cluster ${id}`);
  }

  private async waitFor<T extends { DBInstanceStatus?: string; Status?: string }>(
    look: () => Promise<T | undefined>,
    done: (x: T) => boolean,
    deadline: number,
    what: string,
    name: string,
  ): Promise<T> {
    const started = Date.now();
    for (;;) {
      let x: T | undefined;
      try {
        x = await look();
      } catch (e) {
        if (!isThrottled(e) || Date.now() + this.pollMs > deadline) throw e;
        await this.sleep(this.pollMs);
        continue;
      }
      if (x && done(x)) return x;
      // Just after a create the API may not know the resource yet: that is not its absence.
      if (!x && Date.now() - started > this.graceMs)
        throw new NotFoundError(`${name} disappeared while waiting for ${what}`);
      const last = x ? (x.DBInstanceStatus ?? x.Status ?? "unknown") : "not found";
      if (Date.now() + this.pollMs > deadline)
        throw new DeadlineExceededError(`timed out waiting for ${what}; ${name} is ${last}`);
      await this.sleep(this.pollMs);
    }
  }
}
