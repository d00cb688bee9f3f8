import { randomUUID } from "node:crypto";
import { statfsSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import type { LocalProvider } from "../../src/providers/local/local-provider.js";
import { verifySigV4, type AccessKey, type SignatureFault } from "./sigv4.js";
import { checkPolicy, evaluate, tagContext, type IamDecision, type IamPolicy, type IamRequest } from "./iam.js";

/**
 * A local endpoint for @aws-sdk/client-rds: the RDS Query protocol (form-encoded requests, XML answers and errors
 * as the API reference gives them), so that the SDK's own serializers, deserializers, retries and waiters run
 * unchanged. Behind it, real PostgreSQL clusters of the local provider: an "RDS instance" is a local cluster, an
 * "Aurora cluster replica" a physical standby of it, promoted by PromoteReadReplicaDBCluster. States move through
 * creating, modifying, rebooting and promoting with small delays, as on AWS. It serves tests and the demo, never
 * the service.
 */

const NS = "http://rds.amazonaws.com/doc/2014-10-31/";
const ACCOUNT = "123456789012";

interface Tag {
  Key: string;
  Value: string;
}

interface Instance {
  id: string;
  /** The local cluster behind it. */
  local: string;
  clusterId?: string;
  status: string;
  engine: string;
  engineVersion: string;
  securityGroups: string[];
  tags: Tag[];
  /** Its DB parameter group (instances of the source engine). */
  parameterGroup?: string;
  /** The KMS key its storage is encrypted with, if it is. */
  kmsKeyId?: string;
}

/** A DB parameter group (of an RDS instance) or DB cluster parameter group (of an Aurora cluster): the values set in it. */
interface ParameterGroup {
  family: string;
  cluster: boolean;
  /** What an operator set; the rest is the engine's default. */
  user: Record<string, string>;
  /** The engine's defaults the group shows (Source "engine-default"). */
  engine: Record<string, string>;
}

interface Cluster {
  id: string;
  /** The local standby behind it, named after the cluster. */
  local: string;
  status: string;
  engineVersion: string;
  /** The source instance's id while the cluster replicates it. */
  replicating?: string;
  tags: Tag[];
  securityGroups: string[];
}

export interface RdsEmulatorOptions {
  /** The access key requests must be signed with (SigV4, verified as AWS does): a wrong secret is refused. */
  credentials: AccessKey;
  region?: string;
  /** The security group that denies all traffic: an instance behind only it is fenced (pg_hba on the local cluster). */
  denyAllGroup?: string;
  /** How long a state change (creating, modifying, rebooting, promoting) takes at least. */
  stepMs?: number;
  /** The most records a Describe answers at once, below RDS's own 100 (MaxRecords 20 to 100): to make clients page. */
  maxPage?: number;
  /** Answers this many requests with Throttling first, to exercise the SDK's retries. */
  throttleFirst?: number;
  /** The aurora-postgresql versions on offer; by default, the versions of the instances registered (Aurora offers RDS's). */
  auroraVersions?: string[];
  /**
   * A server certificate and key (PEM) the instances present, as RDS instances do: SSL is turned on in each cluster
   * registered, and the replicas made from it carry the files with the rest of its data directory.
   */
  tls?: { cert: string; key: string };
  /**
   * The IAM policy of the role pgshift runs as: every call is judged by it, with its resource ARN and tags (and the
   * KMS calls RDS makes on the caller's behalf for an encrypted source), and refused with AccessDenied as AWS would.
   */
  policy?: IamPolicy;
}

/** The error codes AWS's Query protocol (RDS) answers a refused signature with. */
const QUERY_FAULTS: Record<SignatureFault["kind"], string> = {
  missing: "MissingAuthenticationToken",
  "unknown-key": "InvalidClientTokenId",
  mismatch: "SignatureDoesNotMatch",
  expired: "SignatureDoesNotMatch",
  scope: "SignatureDoesNotMatch",
};

/** …and the JSON protocols (Secrets Manager, CloudWatch). */
const JSON_FAULTS: Record<SignatureFault["kind"], string> = {
  missing: "MissingAuthenticationTokenException",
  "unknown-key": "UnrecognizedClientException",
  mismatch: "InvalidSignatureException",
  expired: "InvalidSignatureException",
  scope: "InvalidSignatureException",
};

class ApiError extends Error {
  constructor(
    readonly code: string,
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
const el = (name: string, v: string | number | boolean | undefined) =>
  v === undefined ? "" : `<${name}>${esc(String(v))}</${name}>`;
const tagsXml = (tags: Tag[]) =>
  `<TagList>${tags.map((t) => `<Tag>${el("Key", t.Key)}${el("Value", t.Value)}</Tag>`).join("")}</TagList>`;
const groupsXml = (gs: string[]) =>
  `<VpcSecurityGroups>${gs.map((g) => `<VpcSecurityGroupMembership>${el("VpcSecurityGroupId", g)}${el("Status", "active")}</VpcSecurityGroupMembership>`).join("")}</VpcSecurityGroups>`;

/** The numbered members of a Query-protocol list: `Prefix.<member>.N` (and `.Key`/`.Value` for tags). */
function list(form: URLSearchParams, prefix: string): string[] {
  return [...form.keys()]
    .map((k) => new RegExp(`^${prefix.replace(/\./g, "\\.")}\\.[A-Za-z]+\\.(\\d+)$`).exec(k))
    .filter((m): m is RegExpExecArray => Boolean(m))
    .sort((a, b) => Number(a[1]) - Number(b[1]))
    .map((m) => form.get(m[0])!);
}

function tags(form: URLSearchParams): Tag[] {
  const out = new Map<string, Partial<Tag>>();
  for (const [k, v] of form) {
    const m = /^Tags\.Tag\.(\d+)\.(Key|Value)$/.exec(k);
    if (m) out.set(m[1]!, { ...out.get(m[1]!), [m[2]!]: v });
  }
  return [...out.values()].map((t) => ({ Key: t.Key ?? "", Value: t.Value ?? "" }));
}

export class RdsEmulator {
  private readonly instances = new Map<string, Instance>();
  private readonly clusters = new Map<string, Cluster>();
  private readonly parameterGroups = new Map<string, ParameterGroup>();
  private readonly region: string;
  private readonly stepMs: number;
  private throttleLeft: number;
  /** Every action asked for, in order: what a test holds the IAM policy to. */
  readonly calls: string[] = [];
  /** Every call as IAM judged it (with a policy): action, resource, condition keys, and the verdict. */
  readonly judged: { request: IamRequest; decision: IamDecision }[] = [];
  private readonly policy: IamPolicy | undefined;
  /** Snapshots taken on StopDBInstance and DeleteDBInstance, by identifier. */
  readonly snapshots = new Map<string, { instance: string; at: Date }>();
  private server: http.Server | undefined;
  private readonly work = new Set<Promise<void>>();
  private readonly refusals = new Map<string, ApiError>();

  constructor(
    private readonly local: LocalProvider,
    private readonly opts: RdsEmulatorOptions,
  ) {
    this.region = opts.region ?? "eu-west-1";
    this.stepMs = opts.stepMs ?? 200;
    this.throttleLeft = opts.throttleFirst ?? 0;
    this.policy = opts.policy ? checkPolicy(opts.policy) : undefined;
  }

  /** Judges the call's IAM requests by the policy; the first one refused ends it with AccessDenied, naming it. */
  private authorize(requests: IamRequest[]): void {
    if (!this.policy) return;
    for (const request of requests) {
      const decision = evaluate(this.policy, request);
      this.judged.push({ request, decision });
      if (!decision.allowed) {
        throw new ApiError(
          "AccessDenied",
          403,
          `User: arn:aws:sts::${ACCOUNT}:assumed-role/pgshift/service is not authorized to perform: ${request.action} on resource: ${request.resource} because ${decision.sid ? `statement ${decision.sid} denies it` : `no identity-based policy allows the ${request.action} action`}`,
        );
      }
    }
  }

  private tagsOf(arn: string): Tag[] {
    return (
      (
        [...this.instances.values()].find((i) => this.arn("db", i.id) === arn) ??
        [...this.clusters.values()].find((c) => this.arn("cluster", c.id) === arn)
      )?.tags ?? []
    );
  }

  /** What IAM is asked for a call: its action on its resource, and what RDS does on the caller's behalf with it. */
  private iamRequests(action: string, f: URLSearchParams): IamRequest[] {
    const rds = `rds:${action}`;
    const on = (resource: string, context: IamRequest["context"] = {}): IamRequest => ({
      action: rds,
      resource,
      context,
    });
    const existing = (arn: string) => on(arn, tagContext(this.tagsOf(arn)));
    const created = (arn: string): IamRequest[] => {
      const t = tags(f);
      // Tagging on create needs rds:AddTagsToResource too, with the same request tags.
      return [
        on(arn, tagContext([], t)),
        ...(t.length ? [{ action: "rds:AddTagsToResource", resource: arn, context: tagContext([], t) }] : []),
      ];
    };
    const id = (k: string) => f.get(k) ?? "*";
    switch (action) {
      case "DescribeDBInstances":
        return [on(this.arn("db", id("DBInstanceIdentifier")))];
      case "DescribeDBClusters":
        return [on(this.arn("cluster", id("DBClusterIdentifier")))];
      case "DescribeDBParameters":
        return [on(`arn:aws:rds:${this.region}:${ACCOUNT}:pg:${id("DBParameterGroupName")}`)];
      case "DescribeDBClusterParameters":
        return [on(`arn:aws:rds:${this.region}:${ACCOUNT}:cluster-pg:${id("DBClusterParameterGroupName")}`)];
      case "CreateDBCluster": {
        const key = f.get("KmsKeyId");
        // An encrypted replica: RDS uses the key with the caller's permissions, through RDS only.
        const kms = key
          ? ["kms:DescribeKey", "kms:CreateGrant"].map((a) => ({
              action: a,
              resource: key,
              context: { "kms:ViaService": `rds.${this.region}.amazonaws.com` },
            }))
          : [];
        return [...created(this.arn("cluster", id("DBClusterIdentifier"))), ...kms];
      }
      case "CreateDBInstance":
        return created(this.arn("db", id("DBInstanceIdentifier")));
      case "AddTagsToResource": {
        const arn = id("ResourceName");
        return [on(arn, tagContext(this.tagsOf(arn), tags(f)))];
      }
      case "RemoveTagsFromResource": {
        const arn = id("ResourceName");
        return [on(arn, { ...tagContext(this.tagsOf(arn)), "aws:TagKeys": list(f, "TagKeys") })];
      }
      case "PromoteReadReplicaDBCluster":
      case "DeleteDBCluster":
        return [existing(this.arn("cluster", id("DBClusterIdentifier")))];
      case "StopDBInstance":
      case "DeleteDBInstance": {
        const self = existing(this.arn("db", id("DBInstanceIdentifier")));
        // A snapshot on the way needs rds:CreateDBSnapshot as well.
        const snap = f.get("DBSnapshotIdentifier") ?? f.get("FinalDBSnapshotIdentifier");
        return snap ? [self, { ...self, action: "rds:CreateDBSnapshot" }] : [self];
      }
      case "ModifyDBInstance":
      case "RebootDBInstance":
        return [existing(this.arn("db", id("DBInstanceIdentifier")))];
      default:
        return [on("*")];
    }
  }

  /**
   * Registers a local cluster as an RDS for PostgreSQL instance, in its engine's default DB parameter group unless
   * `parameters` names values an operator set (then in a group of its own, `<id>-params`).
   */
  async addInstance(
    id: string,
    opts: {
      local?: string;
      securityGroups?: string[];
      tags?: Tag[];
      parameters?: Record<string, string>;
      kmsKeyId?: string;
      /** The logical database it serves: tagged pgshift:database, as the platform marks what pgshift may fence and retire. */
      database?: string;
    } = {},
  ): Promise<void> {
    const local = opts.local ?? id;
    if (this.opts.tls) {
      const cluster = this.local.cluster({ id: local });
      cluster.writeDataFile("server.crt", this.opts.tls.cert);
      cluster.writeDataFile("server.key", this.opts.tls.key);
      await cluster.query("alter system set ssl = on");
      await cluster.query("select pg_reload_conf()");
    }
    const v = await this.local.sql({ id: local }).query<{ v: string }>("select current_setting('server_version') as v");
    const engineVersion = v.rows[0]!.v.split(" ")[0]!;
    const major = engineVersion.split(".")[0]!;
    const group = opts.parameters ? `${id}-params` : `default.postgres${major}`;
    if (!this.parameterGroups.has(group)) {
      this.parameterGroups.set(group, {
        family: `postgres${major}`,
        cluster: false,
        user: opts.parameters ?? {},
        engine: { "rds.logical_replication": "0" },
      });
    }
    this.addClusterParameterGroup(
      `default.aurora-postgresql${major}`,
      {},
      { ifAbsent: true, family: `aurora-postgresql${major}` },
    );
    this.instances.set(id, {
      id,
      local,
      status: "available",
      engine: "postgres",
      engineVersion,
      securityGroups: opts.securityGroups ?? ["sg-app"],
      tags: [...(opts.tags ?? []), ...(opts.database ? [{ Key: "pgshift:database", Value: opts.database }] : [])],
      parameterGroup: group,
      kmsKeyId: opts.kmsKeyId,
    });
  }

  /**
   * A DB cluster parameter group with the values an operator set. As on AWS, the engine's default group leaves
   * rds.logical_replication at 0.
   */
  addClusterParameterGroup(
    name: string,
    user: Record<string, string>,
    opts: { ifAbsent?: boolean; family?: string } = {},
  ): void {
    if (opts.ifAbsent && this.parameterGroups.has(name)) return;
    const family =
      opts.family ?? `aurora-postgresql${[...this.instances.values()][0]?.engineVersion.split(".")[0] ?? "16"}`;
    this.parameterGroups.set(name, {
      family,
      cluster: true,
      user,
      engine: { "rds.logical_replication": "0", "rds.force_ssl": "0" },
    });
  }

  async listen(port = 0): Promise<string> {
    this.server = http.createServer((req, res) => void this.handle(req, res));
    await new Promise<void>((r) => this.server!.listen(port, "127.0.0.1", r));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  async close(): Promise<void> {
    await Promise.allSettled([...this.work]);
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
  }

  private arn(kind: "db" | "cluster", id: string): string {
    return `arn:aws:rds:${this.region}:${ACCOUNT}:${kind}:${id}`;
  }

  /** From now on, answers the RDS action with an AWS fault (as when a permission is taken from the role), until `allow`. */
  refuse(action: string, code: string, status: number, message: string): void {
    this.refusals.set(action, new ApiError(code, status, message));
  }

  allow(action: string): void {
    this.refusals.delete(action);
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks).toString("utf8");
    const target = String(req.headers["x-amz-target"] ?? "");
    const json = target.startsWith("secretsmanager.") || target.startsWith("GraniteServiceVersion20100801.");
    const fault = verifySigV4(req, body, [this.opts.credentials], {
      region: this.region,
      services: [target.startsWith("secretsmanager.") ? "secretsmanager" : json ? "monitoring" : "rds"],
    });
    if (fault && json) return this.jsonFault(res, fault);
    if (target.startsWith("secretsmanager.")) return this.secrets(target.slice("secretsmanager.".length), body, res);
    if (target.startsWith("GraniteServiceVersion20100801."))
      return this.cloudwatch(target.slice("GraniteServiceVersion20100801.".length), body, res);
    const form = new URLSearchParams(body);
    const action = form.get("Action") ?? "";
    const requestId = randomUUID();
    const send = (status: number, body: string) => {
      res.writeHead(status, { "content-type": "text/xml", "x-amzn-requestid": requestId });
      res.end(`<?xml version="1.0" encoding="UTF-8"?>\n${body}`);
    };
    try {
      if (fault) throw new ApiError(QUERY_FAULTS[fault.kind], 403, fault.message);
      this.calls.push(action);
      if (this.throttleLeft > 0) {
        this.throttleLeft--;
        throw new ApiError("Throttling", 400, "Rate exceeded");
      }
      const refused = this.refusals.get(action);
      if (refused) throw refused;
      this.authorize(this.iamRequests(action, form));
      const result = await this.act(action, form);
      send(
        200,
        `<${action}Response xmlns="${NS}"><${action}Result>${result}</${action}Result><ResponseMetadata>${el("RequestId", requestId)}</ResponseMetadata></${action}Response>`,
      );
    } catch (e) {
      const err = e instanceof ApiError ? e : new ApiError("InternalFailure", 500, (e as Error).message);
      send(
        err.status,
        `<ErrorResponse xmlns="${NS}"><Error><Type>${err.status >= 500 ? "Receiver" : "Sender"}</Type>${el("Code", err.code)}${el("Message", err.message)}</Error>${el("RequestId", requestId)}</ErrorResponse>`,
      );
    }
  }

  /** A signature refused over the JSON protocols (Secrets Manager, CloudWatch), with the codes they use. */
  private jsonFault(res: http.ServerResponse, fault: SignatureFault): void {
    res.writeHead(fault.kind === "missing" ? 403 : 400, {
      "content-type": "application/x-amz-json-1.1",
      "x-amzn-requestid": randomUUID(),
    });
    res.end(JSON.stringify({ __type: JSON_FAULTS[fault.kind], message: fault.message }));
  }

  /** Secrets Manager's JSON protocol, for the RDS-managed master user secrets of the instances. */
  private secrets(action: string, body: string, res: http.ServerResponse): void {
    const answer = (status: number, value: object) => {
      res.writeHead(status, { "content-type": "application/x-amz-json-1.1", "x-amzn-requestid": randomUUID() });
      res.end(JSON.stringify(value));
    };
    this.calls.push(`secretsmanager:${action}`);
    const id = (JSON.parse(body || "{}") as { SecretId?: string }).SecretId ?? "";
    try {
      this.authorize([{ action: `secretsmanager:${action}`, resource: id, context: {} }]);
    } catch (e) {
      return answer(400, { __type: "AccessDeniedException", message: (e as Error).message });
    }
    const instance = [...this.instances.values()].find((i) => this.secretArn(i) === id);
    if (action !== "GetSecretValue")
      return answer(400, { __type: "InvalidRequestException", message: `${action} is not served here` });
    if (!instance)
      return answer(400, {
        __type: "ResourceNotFoundException",
        message: "Secrets Manager can't find the specified secret.",
      });
    const c = this.local.cluster({ id: instance.local }).connectionConfig();
    answer(200, {
      ARN: id,
      Name: id.split(":").pop(),
      VersionId: "v1",
      SecretString: JSON.stringify({ username: c.user, password: c.password }),
    });
  }

  /**
   * CloudWatch's JSON 1.0 protocol, GetMetricData only: the RDS figures pgshift reads, measured on the clusters
   * behind the instances now (one datapoint, this minute), as RDS would publish them.
   */
  private async cloudwatch(action: string, body: string, res: http.ServerResponse): Promise<void> {
    const answer = (status: number, value: object) => {
      res.writeHead(status, { "content-type": "application/x-amz-json-1.0", "x-amzn-requestid": randomUUID() });
      res.end(JSON.stringify(value));
    };
    this.calls.push(`cloudwatch:${action}`);
    try {
      this.authorize([{ action: `cloudwatch:${action}`, resource: "*", context: {} }]);
    } catch (e) {
      return answer(400, { __type: "AccessDenied", message: (e as Error).message });
    }
    if (action !== "GetMetricData")
      return answer(400, { __type: "InvalidAction", message: `${action} is not served here` });
    type Query = {
      Id: string;
      MetricStat?: { Metric?: { MetricName?: string; Dimensions?: Array<{ Name: string; Value: string }> } };
    };
    const queries = ((JSON.parse(body || "{}") as { MetricDataQueries?: Query[] }).MetricDataQueries ?? []).slice(
      0,
      500,
    );
    const results = [];
    for (const q of queries) {
      const m = q.MetricStat?.Metric;
      const dim = (name: string) => m?.Dimensions?.find((d) => d.Name === name)?.Value;
      const value = await this.metric(
        m?.MetricName ?? "",
        dim("DBInstanceIdentifier"),
        dim("DBClusterIdentifier"),
      ).catch(() => undefined);
      results.push({
        Id: q.Id,
        Label: m?.MetricName ?? q.Id,
        Timestamps: value === undefined ? [] : [Math.floor(Date.now() / 60_000) * 60],
        Values: value === undefined ? [] : [value],
        StatusCode: "Complete",
      });
    }
    answer(200, { MetricDataResults: results, Messages: [] });
  }

  /** One figure, measured on the local clusters; undefined where RDS would have no datapoint. */
  private async metric(
    name: string,
    instanceId: string | undefined,
    clusterId: string | undefined,
  ): Promise<number | undefined> {
    if (name === "RDSToAuroraPostgreSQLReplicaLag") {
      const c = clusterId ? this.clusters.get(clusterId) : undefined;
      const source = c?.replicating ? this.instances.get(c.replicating) : undefined;
      if (!c || !source || c.status === "creating") return undefined;
      const r = await this.local.replicationStatus({ id: source.local }, { id: c.local });
      return r.lagSeconds ?? undefined;
    }
    const i = instanceId ? this.instances.get(instanceId) : undefined;
    if (!i) return undefined;
    const sql = this.local.sql({ id: i.local });
    if (name === "OldestReplicationSlotLag") {
      const r = await sql.query<{ b: string | null }>(
        "select max(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn))::text as b from pg_replication_slots where restart_lsn is not null",
      );
      return r.rows[0]?.b === null || r.rows[0]?.b === undefined ? 0 : Number(r.rows[0].b);
    }
    if (name === "FreeStorageSpace") {
      const fs = statfsSync(this.local.cluster({ id: i.local }).dataDir, { bigint: true });
      return Number(fs.bavail * fs.bsize);
    }
    if (name === "TransactionLogsDiskUsage")
      return Number(
        (await sql.query<{ b: string }>("select coalesce(sum(size), 0)::text as b from pg_ls_waldir()")).rows[0]!.b,
      );
    return undefined;
  }

  /** The instance's storage in GiB, as RDS reports AllocatedStorage: the size of the file system its cluster is on. */
  private allocatedGiB(i: Instance): number | undefined {
    try {
      const fs = statfsSync(this.local.cluster({ id: i.local }).dataDir, { bigint: true });
      return Math.max(1, Math.round(Number(fs.blocks * fs.bsize) / 2 ** 30));
    } catch {
      return undefined; // its cluster gone (deleted): RDS would not describe it either
    }
  }

  private secretArn(i: Instance): string {
    return `arn:aws:secretsmanager:${this.region}:${ACCOUNT}:secret:rds!db-${i.id}`;
  }

  private instance(id: string | null): Instance {
    const i = id ? this.instances.get(id) : undefined;
    if (!i) throw new ApiError("DBInstanceNotFound", 404, `DBInstance ${id} not found.`);
    return i;
  }

  private cluster(id: string | null): Cluster {
    const c = id ? this.clusters.get(id) : undefined;
    if (!c) throw new ApiError("DBClusterNotFoundFault", 404, `DBCluster ${id} not found.`);
    return c;
  }

  /** A snapshot AWS takes of an instance as it stops or before it is deleted, when asked for one. */
  private snapshot(name: string | null, i: Instance): void {
    if (!name) return;
    if (this.snapshots.has(name))
      throw new ApiError(
        "DBSnapshotAlreadyExists",
        400,
        `Cannot create the snapshot because a snapshot with the identifier ${name} already exists.`,
      );
    this.snapshots.set(name, { instance: i.id, at: new Date() });
  }

  /** What AWS does to an instance stopped for 7 days: starts it again, by itself. */
  async startInstance(id: string): Promise<void> {
    const i = this.instance(id);
    await this.local.cluster({ id: i.local }).start();
    i.status = "available";
  }

  /** Runs a state change in the background, as AWS does, after at least one step of delay. */
  private later(fn: () => Promise<void>): void {
    const p = (async () => {
      await new Promise((r) => setTimeout(r, this.stepMs));
      await fn();
    })().catch(() => {});
    this.work.add(p);
    void p.finally(() => this.work.delete(p));
  }

  /**
   * One page of a Describe's records, as RDS pages them: MaxRecords from 20 to 100 (100 if not given), and a Marker
   * to continue from, answered with the next one while records remain.
   */
  private page<T>(f: URLSearchParams, items: T[], wrap: (page: T[]) => string): string {
    const asked = f.get("MaxRecords");
    const max = asked === null ? 100 : Number(asked);
    if (!Number.isInteger(max) || max < 20 || max > 100)
      throw new ApiError(
        "InvalidParameterValue",
        400,
        `Invalid value ${asked} for MaxRecords. Must be between 20 and 100`,
      );
    const size = Math.min(max, this.opts.maxPage ?? 100);
    const marker = f.get("Marker");
    const from = marker === null ? 0 : Number(Buffer.from(marker, "base64url").toString("utf8"));
    if (!Number.isInteger(from) || from < 0 || from > items.length)
      throw new ApiError("InvalidParameterValue", 400, "The marker is not valid");
    const next = from + size < items.length ? el("Marker", Buffer.from(String(from + size)).toString("base64url")) : "";
    return wrap(items.slice(from, from + size)) + next;
  }

  /** The Query API's actions pgshift calls, each answered as RDS answers it. */
  private readonly actions: Record<string, (f: URLSearchParams, action: string) => string> = {
    DescribeDBInstances: (f) => this.describeInstances(f),
    DescribeDBClusters: (f) => this.describeClusters(f),
    DescribeDBEngineVersions: (f) => this.describeEngineVersions(f),
    DescribeDBParameters: (f, action) => this.describeParameters(f, action),
    DescribeDBClusterParameters: (f, action) => this.describeParameters(f, action),
    CreateDBCluster: (f) => this.createCluster(f),
    CreateDBInstance: (f) => this.createInstance(f),
    AddTagsToResource: (f, action) => this.changeTags(f, action),
    RemoveTagsFromResource: (f, action) => this.changeTags(f, action),
    PromoteReadReplicaDBCluster: (f) => this.promoteCluster(f),
    ModifyDBInstance: (f) => this.modifyInstance(f),
    RebootDBInstance: (f) => this.rebootInstance(f),
    StopDBInstance: (f) => this.stopInstance(f),
    DeleteDBInstance: (f) => this.deleteInstance(f),
    DeleteDBCluster: (f) => this.deleteCluster(f),
  };

  private async act(action: string, f: URLSearchParams): Promise<string> {
    const handler = Object.hasOwn(this.actions, action) ? this.actions[action] : undefined;
    if (!handler)
      throw new ApiError(
        "InvalidAction",
        400,
        `The action ${action} is not valid for this web service (the emulator serves what pgshift calls)`,
      );
    return handler(f, action);
  }

  private describeInstances(f: URLSearchParams): string {
    const all = f.get("DBInstanceIdentifier")
      ? [this.instance(f.get("DBInstanceIdentifier"))]
      : [...this.instances.values()];
    return this.page(f, all, (p) => `<DBInstances>${p.map((i) => this.instanceXml(i)).join("")}</DBInstances>`);
  }

  private describeClusters(f: URLSearchParams): string {
    const all = f.get("DBClusterIdentifier")
      ? [this.cluster(f.get("DBClusterIdentifier"))]
      : [...this.clusters.values()];
    return this.page(f, all, (p) => `<DBClusters>${p.map((c) => this.clusterXml(c)).join("")}</DBClusters>`);
  }

  private describeEngineVersions(f: URLSearchParams): string {
    const engine = f.get("Engine");
    const offered =
      engine === "aurora-postgresql"
        ? (this.opts.auroraVersions ??
          [...this.instances.values()].filter((i) => i.engine === "postgres").map((i) => i.engineVersion))
        : [];
    const family = (v: string) => `aurora-postgresql${v.split(".")[0]}`;
    const wanted = [...new Set(offered)].filter(
      (v) =>
        (!f.get("EngineVersion") || f.get("EngineVersion") === v) &&
        (!f.get("DBParameterGroupFamily") || f.get("DBParameterGroupFamily") === family(v)),
    );
    return this.page(
      f,
      wanted,
      (p) =>
        `<DBEngineVersions>${p
          .map(
            (v) =>
              `<DBEngineVersion>${el("Engine", "aurora-postgresql")}${el("EngineVersion", v)}${el("DBParameterGroupFamily", family(v))}${el("Status", "available")}</DBEngineVersion>`,
          )
          .join("")}</DBEngineVersions>`,
    );
  }

  private describeParameters(f: URLSearchParams, action: string): string {
    const cluster = action === "DescribeDBClusterParameters";
    const name = f.get(cluster ? "DBClusterParameterGroupName" : "DBParameterGroupName") ?? "";
    const g = this.parameterGroups.get(name);
    if (!g || g.cluster !== cluster) {
      throw new ApiError(
        cluster ? "DBParameterGroupNotFound" : "DBParameterGroupNotFound",
        404,
        `${cluster ? "DBClusterParameterGroup" : "DBParameterGroup"} not found: ${name}`,
      );
    }
    const source = f.get("Source");
    const rows = [
      ...Object.entries(g.engine)
        .filter(([k]) => !(k in g.user))
        .map(([k, v]) => ({ k, v, s: "engine-default" })),
      ...Object.entries(g.user).map(([k, v]) => ({ k, v, s: "user" })),
    ].filter((r) => !source || r.s === source);
    return this.page(
      f,
      rows,
      (p) =>
        `<Parameters>${p
          .map(
            (r) =>
              `<Parameter>${el("ParameterName", r.k)}${el("ParameterValue", r.v)}${el("Source", r.s)}${el("ApplyType", "static")}${el("IsModifiable", true)}</Parameter>`,
          )
          .join("")}</Parameters>`,
    );
  }

  private createCluster(f: URLSearchParams): string {
    const id = f.get("DBClusterIdentifier") ?? "";
    if (this.clusters.has(id))
      throw new ApiError("DBClusterAlreadyExistsFault", 400, `DB Cluster ${id} already exists`);
    const group = f.get("DBClusterParameterGroupName");
    if (group && !this.parameterGroups.get(group)?.cluster)
      throw new ApiError("DBClusterParameterGroupNotFound", 404, `DBClusterParameterGroup not found: ${group}`);
    if (f.get("Engine") !== "aurora-postgresql")
      throw new ApiError("InvalidParameterValue", 400, "Engine must be aurora-postgresql here");
    const sourceArn = f.get("ReplicationSourceIdentifier") ?? "";
    const source = [...this.instances.values()].find((i) => this.arn("db", i.id) === sourceArn);
    if (!source)
      throw new ApiError("DBInstanceNotFound", 404, `ReplicationSourceIdentifier ${sourceArn} is not an instance here`);
    const owner = tags(f).find((t) => t.Key === "pgshift:migration-id")?.Value ?? `emulator:${id}`;
    const c: Cluster = {
      id,
      local: id,
      status: "creating",
      engineVersion: f.get("EngineVersion") ?? source.engineVersion,
      replicating: source.id,
      tags: tags(f),
      securityGroups: list(f, "VpcSecurityGroupIds"),
    };
    this.clusters.set(id, c);
    this.later(async () => {
      await this.local.createReplica({ id: source.local }, { id: c.local }, owner);
      c.status = "available";
    });
    return this.clusterXml(c, "DBCluster");
  }

  private createInstance(f: URLSearchParams): string {
    const id = f.get("DBInstanceIdentifier") ?? "";
    if (this.instances.has(id)) throw new ApiError("DBInstanceAlreadyExists", 400, `DB instance ${id} already exists`);
    const c = this.cluster(f.get("DBClusterIdentifier"));
    const i: Instance = {
      id,
      local: c.local,
      clusterId: c.id,
      status: "creating",
      engine: "aurora-postgresql",
      engineVersion: c.engineVersion,
      securityGroups: c.securityGroups,
      tags: tags(f),
    };
    this.instances.set(id, i);
    const ready = async (): Promise<void> => {
      if (c.status !== "available") return void this.later(ready);
      i.status = "available";
    };
    this.later(ready);
    return this.instanceXml(i, "DBInstance");
  }

  private changeTags(f: URLSearchParams, action: string): string {
    const arn = f.get("ResourceName") ?? "";
    const target =
      [...this.instances.values()].find((i) => this.arn("db", i.id) === arn) ??
      [...this.clusters.values()].find((c) => this.arn("cluster", c.id) === arn);
    if (!target) throw new ApiError("DBInstanceNotFound", 404, `${arn} not found`);
    if (action === "AddTagsToResource")
      for (const t of tags(f)) target.tags = [...target.tags.filter((x) => x.Key !== t.Key), t];
    else {
      const keys = list(f, "TagKeys");
      target.tags = target.tags.filter((t) => !keys.includes(t.Key));
    }
    return "";
  }

  private promoteCluster(f: URLSearchParams): string {
    const c = this.cluster(f.get("DBClusterIdentifier"));
    if (!c.replicating)
      throw new ApiError("InvalidDBClusterStateFault", 400, `DB cluster ${c.id} is not a read replica`);
    const source = this.instance(c.replicating);
    c.status = "promoting";
    this.later(async () => {
      await this.local.promote({ id: source.local }, { id: c.local });
      // AWS releases what the source kept for the replica once it stands alone.
      await this.local.detachReplica({ id: source.local }, { id: c.local });
      c.replicating = undefined;
      c.status = "available";
    });
    return this.clusterXml(c, "DBCluster");
  }

  private modifyInstance(f: URLSearchParams): string {
    const i = this.instance(f.get("DBInstanceIdentifier"));
    const groups = list(f, "VpcSecurityGroupIds");
    if (groups.length > 0) {
      i.securityGroups = groups;
      i.status = "modifying";
      const deny = this.opts.denyAllGroup;
      this.later(async () => {
        // Only the deny-all group: nothing reaches the server but the control plane (the master user stands for
        // its security group) and replication; the reboot that follows ends the sessions.
        if (deny && groups.length === 1 && groups[0] === deny)
          await this.local.fenceRules({ id: i.local }, this.local.cluster({ id: i.local }).user);
        else await this.local.unfence({ id: i.local });
        i.status = "available";
      });
    }
    return this.instanceXml(i, "DBInstance");
  }

  private rebootInstance(f: URLSearchParams): string {
    const i = this.instance(f.get("DBInstanceIdentifier"));
    i.status = "rebooting";
    this.later(async () => {
      const cluster = this.local.cluster({ id: i.local });
      // A fast shutdown waits for every walsender's client (a logical consumer may never let go); RDS's reboot
      // does not wait forever either: after a moment, the immediate kind.
      const stopped = cluster.stop("fast").then(() => true);
      if (!(await Promise.race([stopped, new Promise<boolean>((r) => setTimeout(() => r(false), 2_000))]))) {
        await cluster.stop("immediate");
        await stopped.catch(() => {});
      }
      await cluster.start();
      i.status = "available";
    });
    return this.instanceXml(i, "DBInstance");
  }

  private stopInstance(f: URLSearchParams): string {
    const i = this.instance(f.get("DBInstanceIdentifier"));
    if (i.status !== "available")
      throw new ApiError(
        "InvalidDBInstanceState",
        400,
        `DB instance ${i.id} is ${i.status}; only an available instance can be stopped`,
      );
    this.snapshot(f.get("DBSnapshotIdentifier"), i);
    i.status = "stopping";
    this.later(async () => {
      await this.local.retire({ id: i.local }, "stop");
      i.status = "stopped";
    });
    return this.instanceXml(i, "DBInstance");
  }

  private deleteInstance(f: URLSearchParams): string {
    const i = this.instance(f.get("DBInstanceIdentifier"));
    if (f.get("SkipFinalSnapshot") !== "true" && !f.get("FinalDBSnapshotIdentifier")) {
      throw new ApiError(
        "InvalidParameterCombination",
        400,
        "FinalDBSnapshotIdentifier is required unless SkipFinalSnapshot is specified.",
      );
    }
    this.snapshot(f.get("FinalDBSnapshotIdentifier"), i);
    i.status = "deleting";
    this.later(async () => {
      // A source deleted: its server stops (the local cluster's folder stays, as the snapshot would).
      if (!i.clusterId) await this.local.retire({ id: i.local }, "stop");
      this.instances.delete(i.id);
    });
    return this.instanceXml(i, "DBInstance");
  }

  private deleteCluster(f: URLSearchParams): string {
    const c = this.cluster(f.get("DBClusterIdentifier"));
    c.status = "deleting";
    const owner = c.tags.find((t) => t.Key === "pgshift:migration-id")?.Value ?? `emulator:${c.id}`;
    this.later(async () => {
      const source = c.replicating ? this.instances.get(c.replicating) : undefined;
      await this.local.deleteReplica({ id: source?.local ?? c.local }, { id: c.local }, owner);
      this.clusters.delete(c.id);
    });
    return this.clusterXml(c, "DBCluster");
  }

  private instanceXml(i: Instance, name = "DBInstance"): string {
    const ep = i.status === "creating" ? undefined : this.local.cluster({ id: i.local }).connectionConfig();
    return (
      `<${name}>${el("DBInstanceIdentifier", i.id)}${el("DBInstanceArn", this.arn("db", i.id))}${el("DBInstanceStatus", i.status)}` +
      `${el("Engine", i.engine)}${el("EngineVersion", i.engineVersion)}${el("DBClusterIdentifier", i.clusterId)}${el("MasterUsername", "postgres")}` +
      (i.clusterId ? "" : el("AllocatedStorage", this.allocatedGiB(i))) +
      (ep ? `<Endpoint>${el("Address", ep.host)}${el("Port", ep.port)}</Endpoint>` : "") +
      (i.clusterId
        ? ""
        : `<MasterUserSecret>${el("SecretArn", this.secretArn(i))}${el("SecretStatus", "active")}</MasterUserSecret>`) +
      (i.parameterGroup
        ? `<DBParameterGroups><DBParameterGroup>${el("DBParameterGroupName", i.parameterGroup)}${el("ParameterApplyStatus", "in-sync")}</DBParameterGroup></DBParameterGroups>`
        : "") +
      `${groupsXml(i.securityGroups)}<DBSubnetGroup>${el("DBSubnetGroupName", "local")}</DBSubnetGroup>${el("StorageEncrypted", Boolean(i.kmsKeyId))}${el("KmsKeyId", i.kmsKeyId)}${tagsXml(i.tags)}</${name}>`
    );
  }

  private clusterXml(c: Cluster, name = "DBCluster"): string {
    const members = [...this.instances.values()].filter((i) => i.clusterId === c.id);
    const ep = c.status === "creating" ? undefined : this.local.cluster({ id: c.local }).connectionConfig();
    return (
      `<${name}>${el("DBClusterIdentifier", c.id)}${el("DBClusterArn", this.arn("cluster", c.id))}${el("Status", c.status)}` +
      `${el("Engine", "aurora-postgresql")}${el("EngineVersion", c.engineVersion)}` +
      `${c.replicating ? el("ReplicationSourceIdentifier", this.arn("db", c.replicating)) : ""}` +
      (ep ? `${el("Endpoint", ep.host)}${el("Port", ep.port)}` : "") +
      `<DBClusterMembers>${members.map((m) => `<DBClusterMember>${el("DBInstanceIdentifier", m.id)}${el("IsClusterWriter", true)}</DBClusterMember>`).join("")}</DBClusterMembers>` +
      `${groupsXml(c.securityGroups)}${tagsXml(c.tags)}</${name}>`
    );
  }
}
