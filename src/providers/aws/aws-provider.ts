import type { Retirement } from "../../domain/spec.js";
import type { RDSClient, Tag } from "@aws-sdk/client-rds";
import { GetSecretValueCommand, type SecretsManagerClient } from "@aws-sdk/client-secrets-manager";
import type pg from "pg";
import { lsnAtLeast, type Lsn } from "../../domain/lsn.js";
import pgDriver from "pg";
import { sqlPort } from "../connect.js";
import { InvalidInstanceStateError, ReplayTimeoutError, UnknownInstanceError } from "../errors.js";
import { PostgresAdmin } from "../postgres-admin.js";
import type { Endpoint, InstanceDescription, InstanceRef, Provider, ReplicationStatus } from "../provider.js";
import type { PeerConnection, SqlPort } from "../sql.js";
import type { CloudWatchClient } from "@aws-sdk/client-cloudwatch";
import { withTypedErrors } from "./aws-errors.js";
import { describeFigures, replicationFigures, storageFigures, type CloudWatchFigures } from "./cloudwatch.js";
import type { StorageFigures } from "../../domain/storage.js";
import { awsPreflight, TAG_VALUE_MAX } from "./preflight.js";
import { RdsControl, SOURCE_TAG, type RdsControlOptions } from "./rds-control.js";
import type { CheckResult } from "../../domain/check.js";
import type { AwsMigrationOptions } from "../../domain/spec.js";

/** Where the network fence records the security groups it replaced, on the source itself, so any replica can restore them. */
export const FENCED_GROUPS_TAG = "pgshift:pre-fence-security-groups";
/** Where the SQL fence records the roles it took LOGIN from. */
export const FENCED_ROLES_TAG = "pgshift:fenced-roles";

/**
 * The roles the SQL fence stops: every role that can log in but the master user ($1, whose sessions carry reverse
 * replication), the service's own, superusers, replication roles (CDC consumers keep reading their slots through the
 * cutover) and RDS's own.
 */
const APPLICATION_ROLES = `select rolname from pg_roles
  where rolcanlogin and not rolsuper and not rolreplication and rolname <> current_user and rolname <> $1
    and rolname !~ '^(rds|pg_)' order by rolname`;

const UNFENCED_ROLES = `select rolname from pg_roles
  where rolcanlogin and rolname !~ '^(rds|pg_)' and (rolsuper or rolreplication or rolname = $1 or rolname = current_user) order by rolname`;

export interface AwsProviderOptions {
  rds: RDSClient;
  secrets: SecretsManagerClient;
  /**
   * How writes to the source stop at cutover. sql: the application roles lose LOGIN and their sessions end (no AWS
   * call, fast, CDC consumers keep their access). network: the deny-all security group and a reboot (every client,
   * whatever its role, at the cost of a reboot; CDC consumers are cut off too).
   */
  fence: "sql" | "network";
  /** The security group that allows no inbound traffic, for the network fence. */
  denySecurityGroup?: string;
  /** The Aurora writer's instance class. */
  instanceClass: string;
  /** The target cluster's parameter group; absent: the engine's default group. */
  clusterParameterGroup?: string;
  /**
   * How the service's sessions are encrypted (RDS for PostgreSQL 15 and later refuses unencrypted ones by default):
   * verify-full checks the server's certificate against `caBundle` (AWS's RDS CA bundle) and its name; require
   * encrypts without checking; disable is for a local endpoint whose clusters speak plaintext.
   */
  ssl: { mode: "verify-full"; caBundle: string } | { mode: "require" | "disable" };
  /**
   * IAM database authentication for the service's own sessions: `user` (granted rds_iam, and rds_superuser for what
   * the service does) with a token signed for each endpoint, valid 15 minutes. Reverse replication, a subscription
   * that reconnects for as long as the rollback window lasts, keeps the master user's secret.
   */
  iam?: { user: string; token(host: string, port: number, user: string): Promise<string> };
  /**
   * CloudWatch, when configured: the replica lag AWS measures (RDSToAuroraPostgreSQLReplicaLag) counts in the lag
   * gate beside what SQL measures, the larger winning, and the source's slot and WAL figures go on record with it.
   */
  cloudwatch?: CloudWatchClient;
  /** How long provisioning, fencing and promotion may take. */
  timeoutMs?: number;
  control?: RdsControlOptions;
}

interface Credentials {
  user: string;
  password: string;
}

const escapeIdent = (name: string) => pgDriver.escapeIdentifier(name);

/** node-postgres's TLS options for a mode (the CA bundle is read once per provider). */
function tlsFor(ssl: AwsProviderOptions["ssl"], host: string): pg.ClientConfig["ssl"] {
  if (ssl.mode === "verify-full") return { ca: ssl.caBundle, rejectUnauthorized: true, servername: host };
  return ssl.mode === "require" ? { rejectUnauthorized: false } : false;
}

/** How long a looked-up endpoint or secret is reused: the cutover window must not wait on AWS for what it knew. */
const CACHE_MS = 60_000;

/**
 * RDS for PostgreSQL to Aurora PostgreSQL. A source ref names an RDS instance; a target ref names the Aurora cluster
 * to create (its writer is `<target>-1`). Control-plane calls go through RdsControl; SQL reaches the instances at
 * their endpoints as the master user, whose password is the RDS-managed secret in Secrets Manager (never stored,
 * never logged). The cluster created as a replica has the source's master user, so the source's secret serves both.
 */
export class AwsProvider implements Provider {
  readonly kind = "aws" as const;
  private readonly control: RdsControl;
  private readonly timeoutMs: number;
  private readonly variants = new Map<string, AwsProvider>();

  constructor(
    private readonly opts: AwsProviderOptions,
    private readonly cache = new Map<string, { at: number; value: unknown }>(),
  ) {
    this.control = new RdsControl(opts.rds, opts.control);
    this.timeoutMs = opts.timeoutMs ?? 60 * 60_000;
  }

  /** This provider as one migration's spec configures it; looked-up endpoints and secrets stay shared. */
  configured(o: AwsMigrationOptions): AwsProvider {
    const key = JSON.stringify([o.fence, o.clusterParameterGroup, o.instanceClass]);
    let p = this.variants.get(key);
    if (!p) {
      const defined = Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined));
      p = new AwsProvider({ ...this.opts, ...defined }, this.cache);
      this.variants.set(key, p);
    }
    return p;
  }

  async platformChecks(source: InstanceRef, _target: InstanceRef, database: string): Promise<CheckResult[]> {
    const [instance, applicationRoles, unfencedRoles] = await Promise.all([
      this.control.source(source.id),
      this.opts.fence === "sql" ? this.applicationRoles(source) : Promise.resolve([]),
      this.opts.fence === "sql" ? this.unfencedRoles(source) : Promise.resolve([]),
    ]);
    return awsPreflight(this.control, {
      source: instance,
      clusterParameterGroup: this.opts.clusterParameterGroup,
      fence: this.opts.fence,
      denySecurityGroup: this.opts.denySecurityGroup,
      applicationRoles,
      unfencedRoles,
      database,
    });
  }

  /** The roles that keep LOGIN under the roles fence (AWS's own rds* roles aside: no customer logs in as them). */
  private async unfencedRoles(ref: InstanceRef): Promise<string[]> {
    const master = (await this.masterCredentials(ref)).user;
    return this.pg(ref).run(async (c) =>
      (await c.query<{ rolname: string }>(UNFENCED_ROLES, [master])).rows.map((r) => r.rolname),
    );
  }

  private async applicationRoles(ref: InstanceRef): Promise<string[]> {
    const master = (await this.masterCredentials(ref)).user;
    return this.pg(ref).run(async (c) =>
      (await c.query<{ rolname: string }>(APPLICATION_ROLES, [master])).rows.map((r) => r.rolname),
    );
  }

  static writerOf(target: InstanceRef): string {
    return `${target.id}-1`;
  }

  private async cached<T>(key: string, load: () => Promise<T>): Promise<T> {
    const hit = this.cache.get(key);
    if (hit && Date.now() - hit.at < CACHE_MS) return hit.value as T;
    const value = await load();
    this.cache.set(key, { at: Date.now(), value });
    return value;
  }

  /** An RDS instance, or else an Aurora cluster, by identifier. */
  private async resolve(
    ref: InstanceRef,
  ): Promise<{ kind: "instance" | "cluster"; endpoint?: Endpoint; source: string }> {
    const i = await this.control.instance(ref.id);
    if (i)
      return {
        kind: "instance",
        endpoint: i.Endpoint?.Address ? { host: i.Endpoint.Address, port: i.Endpoint.Port ?? 5432 } : undefined,
        source: ref.id,
      };
    const c = await this.control.cluster(ref.id);
    if (!c)
      throw new UnknownInstanceError(ref.id, "no RDS instance or Aurora cluster of that identifier in this region");
    const source = c.TagList?.find((t) => t.Key === SOURCE_TAG)?.Value ?? ref.id;
    return { kind: "cluster", endpoint: c.Endpoint ? { host: c.Endpoint, port: c.Port ?? 5432 } : undefined, source };
  }

  async endpoint(ref: InstanceRef): Promise<Endpoint> {
    return this.cached(`endpoint:${ref.id}`, async () => {
      const r = await this.resolve(ref);
      if (!r.endpoint)
        throw new InvalidInstanceStateError(ref.id, `${ref.id} has no endpoint yet (still being created?)`);
      return r.endpoint;
    });
  }

  /** The master user's credentials from the RDS-managed secret of the instance (or of the source a cluster replicates). */
  private masterCredentials(ref: InstanceRef): Promise<Credentials> {
    return this.cached(`credentials:${ref.id}`, async () => {
      const { source } = await this.resolve(ref);
      const i = await this.control.source(source);
      const arn = i.MasterUserSecret?.SecretArn;
      if (!arn) {
        throw new InvalidInstanceStateError(
          source,
          `${source} has no RDS-managed master user secret (MasterUserSecret): turn on "Manage master credentials in AWS Secrets Manager" for it`,
        );
      }
      const secret = await withTypedErrors("secretsmanager", this.opts.secrets).send(
        new GetSecretValueCommand({ SecretId: arn }),
      );
      const parsed = JSON.parse(secret.SecretString ?? "{}") as { username?: string; password?: string };
      if (!parsed.username || !parsed.password)
        throw new InvalidInstanceStateError(source, `the secret ${arn} holds no username and password`);
      return { user: parsed.username, password: parsed.password };
    });
  }

  /** Who the service's own sessions are: the IAM database user with a fresh token, or the master user. Reused a minute at most. */
  private sessionCredentials(ref: InstanceRef, ep: Endpoint): Promise<Credentials> {
    const iam = this.opts.iam;
    if (!iam) return this.masterCredentials(ref);
    return this.cached(`iam:${ref.id}`, async () => ({
      user: iam.user,
      password: await iam.token(ep.host, ep.port, iam.user),
    }));
  }

  /** How the service's own sessions reach an instance (`master`: as the master user, for what must outlive a token). */
  async sessionConfig(
    ref: InstanceRef,
    database: string,
    as: "service" | "master" = "service",
  ): Promise<pg.ClientConfig> {
    const ep = await this.endpoint(ref);
    const cred = as === "master" ? await this.masterCredentials(ref) : await this.sessionCredentials(ref, ep);
    return {
      host: ep.host,
      port: ep.port,
      user: cred.user,
      password: cred.password,
      database,
      ssl: tlsFor(this.opts.ssl, ep.host),
    };
  }

  private pg(ref: InstanceRef): PostgresAdmin {
    return new PostgresAdmin(ref.id, (database) => this.sessionConfig(ref, database));
  }

  sql(ref: InstanceRef, database = "postgres"): SqlPort {
    const port = async () => sqlPort(ref.id, await this.sessionConfig(ref, database));
    return {
      query: async (text, params) => (await port()).query(text, params),
      session: async (fn) => (await port()).session(fn),
    };
  }

  async peerConnection(ref: InstanceRef, database: string): Promise<PeerConnection> {
    const c = await this.sessionConfig(ref, database, "master");
    // The source's own outgoing connection: encrypted unless this endpoint speaks plaintext (RDS keeps no CA file to verify with).
    const sslmode = this.opts.ssl.mode === "disable" ? "disable" : "require";
    return {
      host: String(c.host),
      port: Number(c.port),
      user: String(c.user),
      password: String(c.password),
      database,
      sslmode,
    };
  }

  describe(ref: InstanceRef): Promise<InstanceDescription> {
    return this.pg(ref).describe(ref);
  }

  async replicaMajor(source: InstanceRef): Promise<number> {
    // The replica runs the source's engine version (Aurora offers the RDS versions it replicates from).
    return Math.floor((await this.describe(source)).versionNum / 10000);
  }

  async targetExtensions(source: InstanceRef): Promise<Map<string, string[]>> {
    // What the source's engine version offers; Aurora's list for the same version is published, not queryable before the cluster exists.
    const rows = await this.pg(source).run(
      async (c) =>
        (await c.query<{ name: string; version: string }>("select name, version from pg_available_extension_versions"))
          .rows,
    );
    const out = new Map<string, string[]>();
    for (const r of rows) out.set(r.name, [...(out.get(r.name) ?? []), r.version]);
    return out;
  }

  dropInactiveSlot(ref: InstanceRef, slot: string): Promise<bigint> {
    return this.pg(ref).dropInactiveSlot(slot);
  }

  async exists(ref: InstanceRef): Promise<boolean> {
    return Boolean((await this.control.cluster(ref.id)) ?? (await this.control.instance(ref.id)));
  }

  async createReplica(source: InstanceRef, target: InstanceRef, owner: string): Promise<void> {
    const engineVersion = (await this.control.source(source.id)).EngineVersion ?? "";
    await this.control.ensureReplica(
      {
        sourceId: source.id,
        clusterId: target.id,
        instanceId: AwsProvider.writerOf(target),
        instanceClass: this.opts.instanceClass,
        engineVersion,
        owner,
        clusterParameterGroup: this.opts.clusterParameterGroup,
      },
      this.timeoutMs,
    );
  }

  async replicationStatus(source: InstanceRef, target: InstanceRef): Promise<ReplicationStatus> {
    const [sql, cw] = await Promise.all([
      this.sqlReplicationStatus(source, target),
      this.cloudwatchFigures(source, target),
    ]);
    if (!cw) return sql;
    const lag = cw.replicaLagSeconds;
    const lagSeconds = lag === undefined ? sql.lagSeconds : Math.max(lag, sql.lagSeconds ?? 0);
    return { ...sql, lagSeconds, platform: describeFigures(cw) };
  }

  /**
   * The source's storage: CloudWatch's FreeStorageSpace and TransactionLogsDiskUsage against its allocated storage
   * (DescribeDBInstances); undefined without CloudWatch, or before its first datapoint.
   */
  async storage(ref: InstanceRef): Promise<StorageFigures | undefined> {
    const cw = this.opts.cloudwatch;
    if (!cw) return undefined;
    const [i, f] = await Promise.all([
      this.control.source(ref.id),
      this.cached(`cloudwatch-storage:${ref.id}`, () => storageFigures(withTypedErrors("cloudwatch", cw), ref.id)),
    ]);
    if (f.freeBytes === undefined || !i.AllocatedStorage) return undefined;
    return {
      freeBytes: f.freeBytes,
      totalBytes: i.AllocatedStorage * 2 ** 30,
      walBytes: f.walBytes,
      by: "CloudWatch FreeStorageSpace, TransactionLogsDiskUsage",
    };
  }

  /** CloudWatch's figures, fetched at most once a minute (its resolution for RDS); undefined when it is not configured. */
  private async cloudwatchFigures(source: InstanceRef, target: InstanceRef): Promise<CloudWatchFigures | undefined> {
    const cw = this.opts.cloudwatch;
    if (!cw) return undefined;
    return this.cached(`cloudwatch:${source.id}:${target.id}`, () =>
      replicationFigures(withTypedErrors("cloudwatch", cw), source.id, target.id),
    );
  }

  private async sqlReplicationStatus(source: InstanceRef, target: InstanceRef): Promise<ReplicationStatus> {
    const c = await this.control.cluster(target.id);
    const targetRunning = c?.Status === "available";
    // The replica's walsender on the source: named after the target where the replica says so, else the only one.
    const needle = target.id.toLowerCase().replace(/[^a-z0-9]/g, "_");
    return this.pg(source).run(async (db) => {
      const r = await db.query<{
        cur: string;
        state: string | null;
        replay: string | null;
        lag: string | null;
        lag_s: number | null;
        name: string;
      }>(
        `select pg_current_wal_lsn()::text as cur, r.state, r.replay_lsn::text as replay, r.application_name as name,
                pg_wal_lsn_diff(pg_current_wal_lsn(), r.replay_lsn)::bigint::text as lag,
                extract(epoch from r.replay_lag)::float8 as lag_s
           from pg_stat_replication r`,
      );
      const rows = r.rows.filter((x) => x.name.toLowerCase().includes(needle));
      const row = rows[0] ?? (r.rows.length === 1 ? r.rows[0] : undefined);
      if (!row) {
        const cur = (await db.query<{ cur: string }>("select pg_current_wal_lsn()::text as cur")).rows[0]!.cur;
        return {
          state: targetRunning ? "starting" : "stopped",
          targetRunning,
          sourceLsn: cur,
          replayLsn: null,
          lagBytes: null,
          lagSeconds: null,
        };
      }
      const state = row.state === "streaming" ? "streaming" : row.state === "catchup" ? "catchup" : "starting";
      return {
        state,
        targetRunning,
        sourceLsn: row.cur,
        replayLsn: row.replay,
        lagBytes: row.lag === null ? null : BigInt(row.lag),
        lagSeconds: row.lag_s ?? (state === "streaming" ? 0 : null),
      };
    });
  }

  walGenerationRate(ref: InstanceRef, sampleMs: number): Promise<number> {
    return this.pg(ref).walGenerationRate(sampleMs);
  }

  currentLsn(ref: InstanceRef): Promise<Lsn> {
    return this.pg(ref).currentLsn();
  }

  /** The ARN and tags of an instance, or of a cluster (the target, fenced during a rollback). */
  private async tagged(ref: InstanceRef): Promise<{ arn: string; tags: Tag[] }> {
    const i = await this.control.instance(ref.id);
    if (i) return { arn: i.DBInstanceArn!, tags: i.TagList ?? [] };
    const c = await this.control.cluster(ref.id);
    if (!c)
      throw new UnknownInstanceError(ref.id, "no RDS instance or Aurora cluster of that identifier in this region");
    return { arn: c.DBClusterArn!, tags: c.TagList ?? [] };
  }

  /** Records on the resource, before changing anything, what the fence is about to change: any replica can undo it. */
  private async record(ref: InstanceRef, key: string, value: string): Promise<void> {
    const { arn, tags } = await this.tagged(ref);
    if (tags.some((t) => t.Key === key)) return;
    if (value.length > TAG_VALUE_MAX)
      throw new InvalidInstanceStateError(
        ref.id,
        `too many roles to record in a tag (${value.length} characters of names): use FENCE_MODE_NETWORK`,
      );
    await this.control.tag(arn, key, value);
  }

  /** What the fences recorded on the resource: the groups the network fence replaced, the roles the roles fence changed. */
  private async records(ref: InstanceRef): Promise<{ arn: string; groups?: string[]; roles?: string[] }> {
    const { arn, tags } = await this.tagged(ref);
    const value = (key: string) => tags.find((t) => t.Key === key)?.Value;
    const split = (v: string | undefined) => (v === undefined ? undefined : v.split(" ").filter(Boolean));
    return { arn, groups: split(value(FENCED_GROUPS_TAG)), roles: split(value(FENCED_ROLES_TAG)) };
  }

  /** The roles the roles fence recorded on the resource (none if it was never fenced that way). */
  private async fencedRoles(ref: InstanceRef): Promise<string[]> {
    return (await this.records(ref)).roles ?? [];
  }

  /**
   * The network fence for an RDS instance when this migration chose it; the roles fence otherwise, and always for an
   * Aurora cluster (the promoted target, fenced by a rollback): a deny-all security group there would also cut the
   * source's subscription, and reverse replication must still drain the target's last writes to the source.
   */
  async fence(ref: InstanceRef): Promise<void> {
    const i = this.opts.fence === "network" ? await this.control.instance(ref.id) : undefined;
    if (i) {
      await this.record(
        ref,
        FENCED_GROUPS_TAG,
        (i.VpcSecurityGroups ?? []).map((g) => g.VpcSecurityGroupId!).join(" "),
      );
      await this.control.networkFence(ref.id, this.opts.denySecurityGroup!, this.timeoutMs);
      return;
    }
    const admin = this.pg(ref);
    const roles = await this.applicationRoles(ref);
    // A fence resumed after a crash finds the roles already without LOGIN: the tag written first still names them.
    await this.record(ref, FENCED_ROLES_TAG, roles.join(" "));
    const fenced = await this.fencedRoles(ref);
    await admin.run(async (c) => {
      for (const r of fenced) await c.query(`alter role ${escapeIdent(r)} nologin`);
    });
    // Every session pgshift did not open ends, the master user's and superusers' too: those roles keep LOGIN (preflight
    // names them), so the checks before the final LSN and before promotion look for a session of theirs again.
    await admin.endForeignSessions();
  }

  async fencedPosition(ref: InstanceRef): Promise<{ lsn: Lsn; intruders: string[] }> {
    return this.pg(ref).fencedPosition();
  }

  async intruders(ref: InstanceRef): Promise<string[]> {
    return this.pg(ref).intruders();
  }

  /**
   * Undoes whichever fence the resource records (whatever this migration's mode: a service restarted with other
   * settings still undoes what was done), then removes the record, so that a later fence records afresh. Undoing
   * first: a crash in between undoes again, which changes nothing.
   */
  async unfence(ref: InstanceRef): Promise<void> {
    const { arn, groups, roles } = await this.records(ref);
    if (groups !== undefined) await this.control.networkUnfence(ref.id, groups, this.timeoutMs);
    if (roles?.length) {
      // Exactly the roles the fence changed, back to LOGIN.
      await this.pg(ref).run(async (c) => {
        for (const r of roles) await c.query(`alter role ${escapeIdent(r)} login`);
      });
    }
    const done = [groups !== undefined ? FENCED_GROUPS_TAG : "", roles !== undefined ? FENCED_ROLES_TAG : ""].filter(
      Boolean,
    );
    if (done.length > 0) await this.control.untag(arn, done);
  }

  async isFenced(ref: InstanceRef): Promise<boolean> {
    const { groups, roles } = await this.records(ref);
    if (groups !== undefined) {
      const now = (await this.control.source(ref.id)).VpcSecurityGroups?.map((g) => g.VpcSecurityGroupId) ?? [];
      return now.length === 1 && now[0] === this.opts.denySecurityGroup;
    }
    if (!roles?.length) return false;
    return this.pg(ref).run(
      async (c) =>
        (
          await c.query<{ n: string }>(
            "select count(*)::text as n from pg_roles where rolname = any($1) and rolcanlogin",
            [roles],
          )
        ).rows[0]!.n === "0",
    );
  }

  async waitForReplay(target: InstanceRef, lsn: Lsn, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    await this.pg(target).run(async (c) => {
      for (;;) {
        const r = (
          await c.query<{ rec: boolean; lsn: string | null }>(
            "select pg_is_in_recovery() as rec, pg_last_wal_replay_lsn()::text as lsn",
          )
        ).rows[0]!;
        if (!r.rec || (r.lsn && lsnAtLeast(r.lsn, lsn))) return;
        if (Date.now() > deadline) throw new ReplayTimeoutError(target.id, lsn, r.lsn, timeoutMs);
        await new Promise((res) => setTimeout(res, 5));
      }
    });
  }

  async promote(source: InstanceRef, target: InstanceRef): Promise<void> {
    await this.control.promote(target.id, this.timeoutMs);
    // The SQL fence's NOLOGIN reached the replica with the rest of the source's WAL: the target's roles log in again.
    const fenced = this.opts.fence === "sql" ? await this.fencedRoles(source) : [];
    // Available is the control plane's word; writable is the server's.
    await this.pg(target).run(async (c) => {
      for (let i = 0; i < 12_000; i++) {
        if (!(await c.query<{ rec: boolean }>("select pg_is_in_recovery() as rec")).rows[0]!.rec) {
          for (const r of fenced) await c.query(`alter role ${escapeIdent(r)} login`);
          return;
        }
        await new Promise((res) => setTimeout(res, 5));
      }
      throw new InvalidInstanceStateError(
        target.id,
        `${target.id} reports available but is still in recovery after 60 s`,
      );
    });
  }

  async detachReplica(): Promise<void> {
    // Promotion ends Aurora's replication from the source; RDS releases what it kept for it.
  }

  deleteReplica(_source: InstanceRef, target: InstanceRef, owner: string): Promise<"deleted" | "absent" | "not-ours"> {
    return this.control.deleteReplica(target.id, AwsProvider.writerOf(target), owner);
  }

  retire(ref: InstanceRef, how: Retirement, snapshot: string): Promise<string> {
    return this.control.retire(ref.id, how, snapshot);
  }

  keepRetired(ref: InstanceRef): Promise<string | undefined> {
    return this.control.keepStopped(ref.id);
  }
}
