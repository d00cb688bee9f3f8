import type { AwsSettings } from "./providers/aws/create.js";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { InvalidArgumentError } from "./domain/errors.js";
import { isLogLevel, type LogLevel } from "./telemetry/log.js";
import type { TlsFiles } from "./security/tls-material.js";

/**
 * How callers and proxies prove who they are. mutual TLS by default: the API and xDS ports take only clients
 * with a certificate from the trusted CA, and a policy says what each identity may do. Cleartext only when asked.
 */
export type Security =
  { mode: "mtls"; tls: TlsFiles; policyFile: string } | { mode: "insecure"; policyFile: string | undefined };

export interface ServiceConfig {
  host: string;
  /** The API port (gRPC, Connect, gRPC-Web, health, reflection); 0 picks a free one. */
  port: number;
  dataDir: string;
  databaseUrl?: string;
  logLevel: LogLevel;
  /** How long SIGTERM waits for in-flight calls before closing them. */
  drainMs: number;
  /** How long a migration's lease lasts without renewal: the takeover time when a replica dies. */
  leaseMs: number;
  /** The xDS (ADS) port proxies connect to; 0 picks a free one. */
  xdsPort: number;
  /** Whether this replica drives migrations; off makes an API-only replica. */
  engine: boolean;
  /** Where Prometheus scrapes the service's metrics (/metrics); absent: not served. */
  metricsPort?: number;
  /** Where the metrics endpoint binds: loopback unless told otherwise, since it names every database being moved. */
  metricsHost: string;
  /**
   * The lease of a migration between the fence and routing (and while rolling back), when writes are stopped:
   * short and renewed often, so that a replica's death there costs this long, not leaseMs.
   */
  fencedLeaseMs: number;
  /**
   * Where the local provider keeps its clusters (default <data-dir>/local). Replicas that share a store and use the
   * local provider must share this folder: it is where they find the clusters migrations name.
   */
  localDir: string;
  /** This replica's identity in the store; absent: one kept in the data dir, so a restart on it knows its own leases. */
  replicaId?: string;
  /** How long the source (before cutover) and the target (after) are sampled for the baseline comparison. */
  baselineSampleMs: number;
  /** How often the sources of finalized migrations are looked at, and stopped again if the platform started them. */
  retirementCheckMs: number;
  /** The teams' webhooks (a YAML file); absent: nobody is notified. */
  notifyFile?: string;
  security: Security;
  /** How often certificate and policy files are looked at for a change. */
  reloadMs: number;
  /** Per identity on the API: sustained requests a second (bursts of twice that) and open streams. */
  maxRpsPerIdentity: number;
  maxStreamsPerIdentity: number;
  /** The AWS provider, when configured: region, an endpoint override (a local RDS endpoint), the fence's deny-all group. */
  aws?: AwsConfig;
}

/** The AWS provider's settings, as `serve`'s flags give them. */
export type AwsConfig = AwsSettings;

function aws(v: Record<string, string | boolean | undefined>, env: NodeJS.ProcessEnv): AwsConfig | undefined {
  const region = (v["aws-region"] as string | undefined) ?? env.PGSHIFT_AWS_REGION;
  const deny = (v["aws-deny-security-group"] as string | undefined) ?? env.PGSHIFT_AWS_DENY_SECURITY_GROUP;
  const fence = (v["aws-fence"] as string | undefined) ?? env.PGSHIFT_AWS_FENCE ?? "sql";
  if (!region) {
    if (
      deny ||
      v["aws-endpoint"] ||
      v["aws-fence"] ||
      v["aws-db-ssl"] ||
      v["aws-ca-bundle"] ||
      v["aws-db-auth"] ||
      v["aws-db-user"] ||
      v["aws-cloudwatch"]
    )
      throw new InvalidArgumentError("the --aws-* flags need --aws-region: the region the RDS instances are in");
    return undefined;
  }
  if (fence !== "sql" && fence !== "network")
    throw new InvalidArgumentError(`--aws-fence must be sql or network; got "${fence}"`);
  const dbSsl = (v["aws-db-ssl"] as string | undefined) ?? env.PGSHIFT_AWS_DB_SSL ?? "verify-full";
  const caBundleFile = (v["aws-ca-bundle"] as string | undefined) ?? (env.PGSHIFT_AWS_CA_BUNDLE || undefined);
  if (dbSsl !== "verify-full" && dbSsl !== "require" && dbSsl !== "disable") {
    throw new InvalidArgumentError(`--aws-db-ssl must be verify-full, require or disable; got "${dbSsl}"`);
  }
  if (dbSsl === "verify-full" && !caBundleFile) {
    throw new InvalidArgumentError(
      "--aws-db-ssl verify-full (the default) needs --aws-ca-bundle FILE: AWS's RDS certificate bundle (global-bundle.pem, from the RDS documentation), so that the instances' certificates are checked; or --aws-db-ssl require to encrypt without checking",
    );
  }
  const dbAuth = (v["aws-db-auth"] as string | undefined) ?? env.PGSHIFT_AWS_DB_AUTH ?? "secret";
  const iamDbUser = (v["aws-db-user"] as string | undefined) ?? (env.PGSHIFT_AWS_DB_USER || undefined);
  if (dbAuth !== "secret" && dbAuth !== "iam")
    throw new InvalidArgumentError(`--aws-db-auth must be secret or iam; got "${dbAuth}"`);
  if (dbAuth === "iam" && !iamDbUser) {
    throw new InvalidArgumentError(
      "--aws-db-auth iam needs --aws-db-user U: the database user granted rds_iam (and rds_superuser) the service logs in as",
    );
  }
  if (dbAuth === "iam" && dbSsl === "disable")
    throw new InvalidArgumentError(
      "--aws-db-auth iam needs TLS: RDS accepts IAM tokens only over it; drop --aws-db-ssl disable",
    );
  if (dbAuth === "secret" && iamDbUser) throw new InvalidArgumentError("--aws-db-user is for --aws-db-auth iam");
  if (fence === "network" && !deny) {
    throw new InvalidArgumentError(
      "--aws-fence network needs --aws-deny-security-group sg-…: a security group allowing no inbound traffic",
    );
  }
  return {
    region,
    endpoint: (v["aws-endpoint"] as string | undefined) ?? (env.PGSHIFT_AWS_ENDPOINT || undefined),
    fence,
    denySecurityGroup: deny,
    instanceClass: (v["aws-instance-class"] as string | undefined) ?? env.PGSHIFT_AWS_INSTANCE_CLASS ?? "db.r6g.large",
    clusterParameterGroup:
      (v["aws-cluster-parameter-group"] as string | undefined) ??
      (env.PGSHIFT_AWS_CLUSTER_PARAMETER_GROUP || undefined),
    dbSsl,
    caBundleFile,
    iamDbUser: dbAuth === "iam" ? iamDbUser : undefined,
    cloudwatch: v["aws-cloudwatch"] === true || env.PGSHIFT_AWS_CLOUDWATCH === "true",
  };
}

const NEED_TLS =
  "serve needs mutual TLS: --tls-cert, --tls-key and --tls-client-ca (PEM files), and --policy (who may do what); or --insecure for cleartext with no authentication, on a network you trust";

function security(v: Record<string, string | boolean | undefined>, env: NodeJS.ProcessEnv): Security {
  const insecure = v.insecure === true || env.PGSHIFT_INSECURE === "true";
  const files = {
    "tls-cert": (v["tls-cert"] as string | undefined) ?? env.PGSHIFT_TLS_CERT,
    "tls-key": (v["tls-key"] as string | undefined) ?? env.PGSHIFT_TLS_KEY,
    "tls-client-ca": (v["tls-client-ca"] as string | undefined) ?? env.PGSHIFT_TLS_CLIENT_CA,
  };
  const policyFile = (v.policy as string | undefined) ?? (env.PGSHIFT_POLICY || undefined);
  const given = Object.values(files).filter(Boolean).length;
  if (insecure) {
    if (given > 0)
      throw new InvalidArgumentError(
        "--insecure and --tls-* contradict each other: give the TLS files, or --insecure, not both",
      );
    return { mode: "insecure", policyFile: policyFile ? resolve(policyFile) : undefined };
  }
  if (given === 0) throw new InvalidArgumentError(NEED_TLS);
  const missing = Object.entries(files)
    .filter(([, f]) => !f)
    .map(([k]) => `--${k}`);
  if (missing.length > 0)
    throw new InvalidArgumentError(
      `mutual TLS needs --tls-cert, --tls-key and --tls-client-ca; missing ${missing.join(", ")}`,
    );
  if (!policyFile) {
    throw new InvalidArgumentError(
      "--policy is required with mutual TLS: a YAML file saying which identities may do what to which databases (see deploy/policy.yaml)",
    );
  }
  return {
    mode: "mtls",
    tls: {
      certFile: resolve(files["tls-cert"]!),
      keyFile: resolve(files["tls-key"]!),
      clientCaFile: resolve(files["tls-client-ca"]!),
    },
    policyFile: resolve(policyFile),
  };
}

function port(name: string, v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 65535)
    throw new InvalidArgumentError(`${name} must be a port number from 0 to 65535; got "${v}"`);
  return n;
}

function metricsPort(v: string | undefined): number | undefined {
  if (v === undefined || v === "") return undefined;
  const n = port("metrics-port", v);
  if (n === 0)
    throw new InvalidArgumentError(
      "metrics-port must name a port (Prometheus has to know where to scrape); leave it out to serve no metrics",
    );
  return n;
}

function positive(name: string, v: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0)
    throw new InvalidArgumentError(`${name} must be a positive number of milliseconds; got "${v}"`);
  return n;
}

function count(name: string, v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 1_000_000)
    throw new InvalidArgumentError(`${name} must be a whole number from 1 to 1000000; got "${v}"`);
  return n;
}

function replicaId(v: string | undefined): string | undefined {
  if (v === undefined || v === "") return undefined;
  if (!/^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/.test(v)) {
    throw new InvalidArgumentError(
      `replica-id must be 1 to 128 letters, digits, ".", "_", ":" or "-", starting with a letter or digit; got "${v.slice(0, 40)}"`,
    );
  }
  return v;
}

function onOff(name: string, v: string): boolean {
  if (v === "on" || v === "true") return true;
  if (v === "off" || v === "false") return false;
  throw new InvalidArgumentError(`${name} must be on or off; got "${v}"`);
}

/** The flags its parser takes: `pgshift help` describes each, and a test holds the two to each other. */
export const SERVE_OPTIONS = {
  host: { type: "string" },
  port: { type: "string" },
  "data-dir": { type: "string" },
  "database-url": { type: "string" },
  "log-level": { type: "string" },
  "drain-ms": { type: "string" },
  "lease-ms": { type: "string" },
  engine: { type: "string" },
  "xds-port": { type: "string" },
  "metrics-port": { type: "string" },
  "metrics-host": { type: "string" },
  "fenced-lease-ms": { type: "string" },
  "baseline-sample-ms": { type: "string" },
  "retirement-check-ms": { type: "string" },
  notify: { type: "string" },
  "replica-id": { type: "string" },
  "local-dir": { type: "string" },
  "tls-cert": { type: "string" },
  "tls-key": { type: "string" },
  "tls-client-ca": { type: "string" },
  policy: { type: "string" },
  insecure: { type: "boolean" },
  "reload-ms": { type: "string" },
  "max-rps-per-identity": { type: "string" },
  "max-streams-per-identity": { type: "string" },
  "aws-region": { type: "string" },
  "aws-endpoint": { type: "string" },
  "aws-deny-security-group": { type: "string" },
  "aws-instance-class": { type: "string" },
  "aws-fence": { type: "string" },
  "aws-cluster-parameter-group": { type: "string" },
  "aws-db-ssl": { type: "string" },
  "aws-ca-bundle": { type: "string" },
  "aws-db-auth": { type: "string" },
  "aws-cloudwatch": { type: "boolean" },
  "aws-db-user": { type: "string" },
} as const;

/** Flags win over environment variables, which win over defaults. */
export function parseServiceConfig(argv: string[], env: NodeJS.ProcessEnv = process.env): ServiceConfig {
  const { values } = parseArgs({
    args: argv,
    options: SERVE_OPTIONS,
    strict: true,
  });
  const logLevel = values["log-level"] ?? env.PGSHIFT_LOG_LEVEL ?? "info";
  if (!isLogLevel(logLevel))
    throw new InvalidArgumentError(`log level must be debug, info, warn or error; got "${logLevel}"`);
  const drain = Number(values["drain-ms"] ?? env.PGSHIFT_DRAIN_MS ?? 10_000);
  if (!Number.isFinite(drain) || drain < 0) throw new InvalidArgumentError("drain-ms must be a number of milliseconds");
  const leaseMs = positive("lease-ms", values["lease-ms"] ?? env.PGSHIFT_LEASE_MS ?? "10000");
  const dataDir = resolve(values["data-dir"] ?? env.PGSHIFT_DATA_DIR ?? ".pgshift");
  return {
    host: values.host ?? env.PGSHIFT_HOST ?? "127.0.0.1",
    port: port("port", values.port ?? env.PGSHIFT_PORT ?? "50051"),
    dataDir,
    localDir: resolve(values["local-dir"] ?? env.PGSHIFT_LOCAL_DIR ?? join(dataDir, "local")),
    databaseUrl: values["database-url"] ?? (env.DATABASE_URL || undefined),
    logLevel,
    drainMs: drain,
    xdsPort: port("xds-port", values["xds-port"] ?? env.PGSHIFT_XDS_PORT ?? "18000"),
    engine: onOff("engine", values.engine ?? env.PGSHIFT_ENGINE ?? "on"),
    leaseMs,
    fencedLeaseMs: Math.min(
      leaseMs,
      positive("fenced-lease-ms", values["fenced-lease-ms"] ?? env.PGSHIFT_FENCED_LEASE_MS ?? "2000"),
    ),
    replicaId: replicaId(values["replica-id"] ?? env.PGSHIFT_REPLICA_ID),
    metricsPort: metricsPort(values["metrics-port"] ?? env.PGSHIFT_METRICS_PORT),
    metricsHost: values["metrics-host"] ?? env.PGSHIFT_METRICS_HOST ?? "127.0.0.1",
    baselineSampleMs: positive(
      "baseline-sample-ms",
      values["baseline-sample-ms"] ?? env.PGSHIFT_BASELINE_SAMPLE_MS ?? "2000",
    ),
    retirementCheckMs: positive(
      "retirement-check-ms",
      values["retirement-check-ms"] ?? env.PGSHIFT_RETIREMENT_CHECK_MS ?? "3600000",
    ),
    notifyFile: (values.notify ?? env.PGSHIFT_NOTIFY) ? resolve((values.notify ?? env.PGSHIFT_NOTIFY)!) : undefined,
    security: security(values, env),
    reloadMs: positive("reload-ms", values["reload-ms"] ?? env.PGSHIFT_RELOAD_MS ?? "2000"),
    maxRpsPerIdentity: count(
      "max-rps-per-identity",
      values["max-rps-per-identity"] ?? env.PGSHIFT_MAX_RPS_PER_IDENTITY ?? "200",
    ),
    aws: aws(values, env),
    maxStreamsPerIdentity: count(
      "max-streams-per-identity",
      values["max-streams-per-identity"] ?? env.PGSHIFT_MAX_STREAMS_PER_IDENTITY ?? "200",
    ),
  };
}
