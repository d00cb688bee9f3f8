/**
 * Every command's and subcommand's help in one table: `pgshift <command> [<sub>] --help` prints its entry, and
 * `pgshift --help` lists the commands. Kept apart from the commands so that answering --help loads nothing else.
 */
export interface CommandHelp {
  /** One line: what it does. */
  summary: string;
  /** The synopsis after `pgshift `. */
  usage: string;
  /** Each flag with what it means (environment variable and default where there is one). */
  flags?: [flag: string, meaning: string][];
  /** A line that works as typed (after the service or cluster it names exists). */
  example: string;
}

const TLS_FLAGS: [string, string][] = [
  [
    "--ca FILE",
    "the CA that signed the service's certificate (PGSHIFT_CA); with --cert and --key: mutual TLS, and --api says https://",
  ],
  ["--cert FILE", "this client's certificate, naming its identity (PGSHIFT_CLIENT_CERT)"],
  ["--key FILE", "its private key (PGSHIFT_CLIENT_KEY)"],
];
const API_FLAGS: [string, string][] = [
  ["--api URL", "the service's API (PGSHIFT_API, default http://127.0.0.1:50051, https://… with TLS)"],
  ...TLS_FLAGS,
  ["--actor NAME", "who is acting, recorded in the migration's event log"],
];
const ACTION_FLAGS: [string, string][] = [...API_FLAGS, ["--reason TEXT", "why, recorded with the action"]];
const DATA_DIR: [string, string] = [
  "--data-dir DIR",
  "the service's data directory; clusters live under DIR/local (PGSHIFT_DATA_DIR, default ./.pgshift)",
];

function action(verb: string, what: string): CommandHelp {
  return {
    summary: what,
    usage: `ctl ${verb} ID [--reason TEXT] [--actor NAME]`,
    flags: ACTION_FLAGS,
    example: `pgshift ctl ${verb} 0b6c2a1e-… --reason "change approved in CHG-1234"`,
  };
}

export const HELP: Record<string, CommandHelp> = {
  serve: {
    summary:
      "run the migration service: gRPC/Connect API, xDS server for the proxies, and the engine that drives migrations",
    usage: "serve [flags]",
    flags: [
      ["--port N", "API port (PGSHIFT_PORT, default 50051; 0 picks a free port)"],
      ["--host H", "address to bind (PGSHIFT_HOST, default 127.0.0.1)"],
      ["--xds-port N", "ADS port for the proxies (PGSHIFT_XDS_PORT, default 18000; 0 picks a free port)"],
      DATA_DIR,
      [
        "--database-url URL",
        "the state store (DATABASE_URL); without it the service runs its own PostgreSQL under the data dir",
      ],
      ["--log-level L", "debug, info, warn or error (PGSHIFT_LOG_LEVEL, default info)"],
      ["--drain-ms N", "how long SIGTERM waits for in-flight calls (PGSHIFT_DRAIN_MS, default 10000)"],
      ["--lease-ms N", "a dead replica's migrations move after this (PGSHIFT_LEASE_MS, default 10000)"],
      [
        "--fenced-lease-ms N",
        "the lease while writes are stopped, renewed often (PGSHIFT_FENCED_LEASE_MS, default 2000)",
      ],
      [
        "--retirement-check-ms N",
        "how often finalized migrations' stopped sources are looked at, and stopped again if running (PGSHIFT_RETIREMENT_CHECK_MS, default 3600000)",
      ],
      [
        "--notify FILE",
        "the teams' webhooks, YAML (teams: {billing: [{url, format: json|slack, secret_file}]}); each notice is signed (PGSHIFT_NOTIFY)",
      ],
      ["--engine on|off", "off serves the API only (PGSHIFT_ENGINE, default on)"],
      ["--metrics-port N", "Prometheus metrics at http://HOST:N/metrics (PGSHIFT_METRICS_PORT; default: not served)"],
      ["--metrics-host H", "address the metrics endpoint binds (PGSHIFT_METRICS_HOST, default 127.0.0.1)"],
      ["--replica-id ID", "this replica's identity in the store (PGSHIFT_REPLICA_ID; default: kept in the data dir)"],
      ["--local-dir DIR", "the local provider's clusters (PGSHIFT_LOCAL_DIR, default DATA_DIR/local)"],
      ["--baseline-sample-ms N", "each baseline sample's length (PGSHIFT_BASELINE_SAMPLE_MS, default 2000)"],
      [
        "--tls-cert FILE",
        "the server certificate for the API and xDS ports, PEM (PGSHIFT_TLS_CERT); reloaded when it changes",
      ],
      ["--tls-key FILE", "its private key (PGSHIFT_TLS_KEY)"],
      [
        "--tls-client-ca FILE",
        "the CA client certificates must come from; clients without one are refused (PGSHIFT_TLS_CLIENT_CA)",
      ],
      [
        "--policy FILE",
        "who may do what to which database, YAML (PGSHIFT_POLICY); required with TLS; see deploy/policy.yaml",
      ],
      ["--insecure", "cleartext, no authentication (PGSHIFT_INSECURE=true): only on a network you trust"],
      [
        "--reload-ms N",
        "how often certificate and policy files are checked for a change (PGSHIFT_RELOAD_MS, default 2000)",
      ],
      [
        "--max-rps-per-identity N",
        "API requests a second one identity may send, bursts of twice that (PGSHIFT_MAX_RPS_PER_IDENTITY, default 200)",
      ],
      [
        "--aws-region R",
        "serve PROVIDER_AWS in this region (PGSHIFT_AWS_REGION); credentials from the AWS SDK's default chain",
      ],
      [
        "--aws-fence sql|network",
        "sql: application roles lose LOGIN, CDC consumers keep access (default); network: a deny-all group and a reboot (PGSHIFT_AWS_FENCE)",
      ],
      [
        "--aws-deny-security-group SG",
        "a security group allowing no inbound traffic, for the network fence (PGSHIFT_AWS_DENY_SECURITY_GROUP)",
      ],
      ["--aws-instance-class C", "the Aurora writer's class (PGSHIFT_AWS_INSTANCE_CLASS, default db.r6g.large)"],
      [
        "--aws-db-ssl MODE",
        "verify-full (default, with --aws-ca-bundle), require (encrypted, unchecked) or disable (a local endpoint's plaintext clusters) (PGSHIFT_AWS_DB_SSL)",
      ],
      [
        "--aws-db-auth secret|iam",
        "secret: the master user's RDS-managed secret (default); iam: IAM database tokens as --aws-db-user for the service's sessions (PGSHIFT_AWS_DB_AUTH)",
      ],
      [
        "--aws-db-user U",
        "with --aws-db-auth iam: the database user granted rds_iam and rds_superuser (PGSHIFT_AWS_DB_USER)",
      ],
      [
        "--aws-cloudwatch",
        "also read RDSToAuroraPostgreSQLReplicaLag (it counts in the lag gate), OldestReplicationSlotLag and TransactionLogsDiskUsage (PGSHIFT_AWS_CLOUDWATCH=true)",
      ],
      [
        "--aws-ca-bundle FILE",
        "AWS's RDS certificate bundle (global-bundle.pem) the instances' certificates are checked against (PGSHIFT_AWS_CA_BUNDLE)",
      ],
      [
        "--aws-cluster-parameter-group G",
        "the target clusters' parameter group when a spec names none; it must set rds.logical_replication = 1 (PGSHIFT_AWS_CLUSTER_PARAMETER_GROUP)",
      ],
      [
        "--aws-endpoint URL",
        "an endpoint override for RDS and Secrets Manager, e.g. a local RDS endpoint (PGSHIFT_AWS_ENDPOINT)",
      ],
      [
        "--max-streams-per-identity N",
        "API streams (watches) one identity may hold open (PGSHIFT_MAX_STREAMS_PER_IDENTITY, default 200)",
      ],
    ],
    example:
      "pgshift serve --tls-cert tls/server.crt --tls-key tls/server.key --tls-client-ca tls/ca.crt --policy deploy/policy.yaml --database-url postgres://pgshift@store/pgshift",
  },
  "dev-certs": {
    summary:
      "make a throwaway CA, server and client certificates (openssl) for a first try; production uses the platform's own CA",
    usage: "dev-certs --out DIR [--client NAME=IDENTITY]... [--server-name NAME]... [--days N]",
    flags: [
      ["--out DIR", "where ca.crt, server.crt/.key and NAME.crt/.key are written"],
      [
        "--client NAME=IDENTITY",
        "a client certificate naming IDENTITY (a spiffe:// URI SAN, else the CN); repeatable; default operator=spiffe://pgshift.local/sa/operator",
      ],
      [
        "--server-name NAME",
        "a DNS name or IP address the service is reached at (repeatable; default 127.0.0.1, localhost, pgshift)",
      ],
      ["--days N", "validity (default 30)"],
    ],
    example:
      "pgshift dev-certs --out ./tls --client operator=spiffe://pgshift.local/sa/operator --client sidecar=spiffe://pgshift.local/sa/app-sidecar",
  },
  console: {
    summary:
      "the web console in a local browser against a mutual-TLS service: a loopback listener forwarding to the API with your client certificate",
    usage: "console --api https://HOST:PORT --ca F --cert F --key F [--port 8080] [--actor NAME]",
    flags: [
      ["--api URL", "the service's API (PGSHIFT_API, default https://127.0.0.1:50051)"],
      ...TLS_FLAGS,
      ["--port N", "the loopback port the browser opens (default 8080; 0 picks a free one)"],
      [
        "--actor NAME",
        "your name, sent as x-pgshift-actor with every call and recorded beside the certificate's identity",
      ],
    ],
    example: "pgshift console --api https://pgshift.internal:50051 --ca ca.crt --cert me.crt --key me.key",
  },
  health: {
    summary:
      "ask a running service's gRPC health service whether it serves; exit 0 when SERVING (for container health checks)",
    usage: "health [--api URL] [--service NAME]",
    flags: [
      ["--api URL", "the service's API (PGSHIFT_API, default http://127.0.0.1:50051, https://… with TLS)"],
      ...TLS_FLAGS,
      ["--service NAME", 'a service name, e.g. migration.v1.MigrationService (default "": the whole server)'],
    ],
    example: "pgshift health --api http://127.0.0.1:50051",
  },
  ctl: {
    summary: "operate migrations through the API; JSON out, one object per line",
    usage:
      "ctl <create|list|get|watch|routing|verify|register|databases|campaign|plan|approve|pause|resume|abort|rollback|finalize> … [--api URL] [--actor NAME]",
    flags: API_FLAGS,
    example: "pgshift ctl list --phase ready_for_cutover",
  },
  "ctl create": {
    summary:
      "start a migration from a spec file (YAML or JSON: the API's MigrationSpec) or flags; flags win over the file",
    usage:
      "ctl create [--spec FILE] [--database NAME --source ID --target ID] [--provider local|aws] [--region R] [--cutover manual|automatic] [--request-id ID]",
    flags: [
      ...API_FLAGS,
      [
        "--spec FILE",
        "a MigrationSpec in YAML or JSON (fields as in proto/migration/v1/migration.proto); unknown fields are refused",
      ],
      ["--database NAME", "the logical database (spec.database_name), registered with ctl register"],
      ["--source ID", "the source instance (spec.source.id)"],
      ["--target ID", "the target to create (spec.target.id)"],
      ["--provider local|aws", "spec.provider (default local)"],
      ["--region REGION", "AWS: the region of source and target (default: the service's)"],
      ["--cutover manual|automatic", "spec.cutover_mode (default manual: ctl approve starts the cutover)"],
      ["--request-id ID", "makes a retried create return the same migration"],
    ],
    example: "pgshift ctl create --database billing-db --source billing --target billing-aurora --cutover automatic",
  },
  "ctl list": {
    summary: "list migrations, optionally of one database or in some phases",
    usage: "ctl list [--database NAME] [--phase PHASE]...",
    flags: [
      ...API_FLAGS,
      ["--database NAME", "only this database's migrations"],
      ["--phase PHASE", "only these phases (repeatable), e.g. completed"],
    ],
    example: "pgshift ctl list --database billing --phase completed --phase rolling_back",
  },
  "ctl get": {
    summary: "one migration: phase, checks, positions, routes",
    usage: "ctl get ID",
    flags: API_FLAGS,
    example: "pgshift ctl get 0b6c2a1e-…",
  },
  "ctl watch": {
    summary:
      "follow a migration: on a terminal a live view (phase timeline, lag window, lag, WAL rate, verdicts); otherwise its events as JSON lines",
    usage: "ctl watch ID [--json]",
    flags: [...API_FLAGS, ["--json", "JSON lines even on a terminal"]],
    example: "pgshift ctl watch 0b6c2a1e-…",
  },
  "ctl routing": {
    summary: "where a database's traffic goes and which proxies have applied it",
    usage: "ctl routing DATABASE",
    flags: API_FLAGS,
    example: "pgshift ctl routing billing",
  },
  "ctl verify": {
    summary:
      "compare source and target now, every table by checksum in key ranges, while the side that follows catches up (REPLICATING, READY_FOR_CUTOVER, COMPLETED); exit 1 when a range differs",
    usage: "ctl verify ID",
    flags: API_FLAGS,
    example: "pgshift ctl verify 0b6c2a1e-…",
  },
  "ctl register": {
    summary:
      "register a logical database (or change its entry): the instances a migration of it may take as source, its team and labels; needs role admin on it",
    usage:
      "ctl register NAME --instance ID [--instance ID]... --team TEAM [--label KEY=VALUE]... [--provider local|aws] [--region REGION]",
    flags: [
      ...API_FLAGS,
      ["--instance ID", "an instance serving it (repeatable): a local cluster's name, or an RDS instance identifier"],
      ["--team TEAM", "the team that owns it"],
      ["--label KEY=VALUE", "a label to select it by (repeatable)"],
      ["--provider local|aws", "where its instances run (default local)"],
      ["--region REGION", "AWS: the instances' region (default: the service's)"],
    ],
    example: "pgshift ctl register billing-db --instance billing-prod --team billing --label tier=gold --provider aws",
  },
  "ctl databases": {
    summary: "list the registered databases the caller may view, optionally of one team or with some labels",
    usage: "ctl databases [--team TEAM] [--label KEY=VALUE]...",
    flags: [
      ...API_FLAGS,
      ["--team TEAM", "only this team's databases"],
      ["--label KEY=VALUE", "only databases with this label (repeatable: all must match)"],
    ],
    example: "pgshift ctl databases --team billing",
  },
  "ctl campaign": {
    summary:
      "fleet campaigns: migrate many registered databases in waves, within limits and change windows, pausing on trouble; JSON out (watch on a terminal: a line per change)",
    usage:
      "ctl campaign <create --spec FILE [--request-id ID] | list | get ID | watch ID [--json] | pause ID | resume ID | cancel ID | approve-wave ID --wave N> [--reason TEXT]",
    flags: [
      ...API_FLAGS,
      [
        "--spec FILE",
        "create: a CampaignSpec in YAML or JSON (fields as in proto/migration/v1/campaign.proto); unknown fields are refused",
      ],
      ["--request-id ID", "create: makes a retried create return the same campaign"],
      ["--wave N", "approve-wave: the wave to let start (1 or more)"],
      ["--reason TEXT", "pause, resume, cancel, approve-wave: why, recorded in the campaign's log"],
      ["--json", "watch: JSON lines even on a terminal"],
    ],
    example: "pgshift ctl campaign create --spec fleet.yaml && pgshift ctl campaign watch 7d1e…",
  },
  "ctl plan": {
    summary:
      "the AWS calls a migration from an RDS instance to a new Aurora cluster will make, in order, without making them",
    usage:
      "ctl plan --source RDS_INSTANCE --target AURORA_CLUSTER [--fence network|sql] [--deny-security-group SG] [--cluster-parameter-group G] [--cloudwatch] [--retirement stop|delete] [--json]",
    flags: [
      ["--source ID", "the RDS for PostgreSQL instance"],
      ["--target ID", "the Aurora PostgreSQL cluster to create (its writer is ID-1)"],
      [
        "--fence network|sql",
        "network: a deny-all security group and a reboot (default); sql: roles lose LOGIN, no AWS call",
      ],
      ["--deny-security-group SG", "the group that allows nothing, for the network fence"],
      ["--instance-class C", "the writer's class (default db.r6g.large)"],
      ["--engine-version V", "the Aurora engine version (default: the source's)"],
      ["--cluster-parameter-group G", "the target's DB cluster parameter group (default: the engine's)"],
      ["--cloudwatch", "the service reads CloudWatch too (--aws-cloudwatch)"],
      [
        "--retirement stop|delete",
        "how finalize retires the source, as the spec's source_retirement says (default stop)",
      ],
      ["--json", "one JSON object per call"],
    ],
    example: "pgshift ctl plan --source billing --target billing-aurora --deny-security-group sg-0deny",
  },
  "ctl approve": action("approve", "approve a migration waiting in READY_FOR_CUTOVER: the cutover starts"),
  "ctl pause": action("pause", "hold a migration where it is (no cutover starts while paused)"),
  "ctl resume": action("resume", "let a paused migration go on"),
  "ctl abort": action("abort", "stop a migration before cutover, unfence the source and remove what it created"),
  "ctl rollback": action("rollback", "send traffic back to the source and resume CDC there (until finalize)"),
  "ctl finalize": action("finalize", "end the rollback window: drop what rollback needed and retire the source"),
  local: {
    summary: "manage the local provider's clusters (under <data-dir>/local)",
    usage: "local <list|register> [flags]",
    flags: [DATA_DIR],
    example: "pgshift local list",
  },
  "local list": {
    summary: "the local clusters, their ports and whether they run",
    usage: "local list [--data-dir DIR]",
    flags: [DATA_DIR],
    example: "pgshift local list",
  },
  "local register": {
    summary: "use a running cluster on this machine as a source",
    usage: "local register --name N --pg-data DIR --port P --user U (--password-file F | --password-stdin)",
    flags: [
      ["--name N", "the name migrations will use for it"],
      ["--pg-data DIR", "its data directory"],
      ["--port P", "its port"],
      ["--user U", "a superuser"],
      ["--password-file F", "the superuser's password from a file"],
      [
        "--password-stdin",
        "the password from standard input (or PGSHIFT_REGISTER_PASSWORD; never on the command line)",
      ],
      DATA_DIR,
    ],
    example:
      "pgshift local register --name orders --pg-data /var/lib/postgresql/15/main --port 5432 --user postgres --password-stdin < pw",
  },
  proxy: {
    summary: "the local stand-in for an Envoy sidecar: an xDS-driven TCP proxy",
    usage: "proxy --xds HOST:PORT[,HOST:PORT...] --node-id ID [--listen DB=PORT ...]",
    flags: [
      [
        "--xds HOST:PORT[,…]",
        "the service's xDS address; several replicas or a DNS name: a failed stream moves to the next",
      ],
      [
        "--node-id ID",
        "this proxy's name as the service shows it; over TLS its certificate's identity, optionally followed by /INSTANCE",
      ],
      ["--listen DB=PORT", "listen for database DB on PORT instead of the port the service declares (repeatable)"],
      ...TLS_FLAGS,
    ],
    example: "pgshift proxy --xds 127.0.0.1:18000 --node-id app-1 --listen billing=6432",
  },
};

/** Whether the arguments ask for help rather than for the command. */
export function wantsHelp(argv: string[]): boolean {
  return argv.includes("--help") || argv.includes("-h");
}

/** The help of `pgshift <path>`, e.g. "ctl watch"; undefined for a path with none. */
export function helpFor(path: string): string | undefined {
  const h = HELP[path];
  if (!h) return undefined;
  const subs = Object.keys(HELP).filter((k) => k.startsWith(`${path} `));
  const width = Math.max(0, ...(h.flags ?? []).map(([f]) => f.length));
  return [
    `usage: pgshift ${h.usage}`,
    "",
    h.summary,
    ...(subs.length
      ? [
          "",
          "subcommands (each answers --help):",
          ...subs.map((s) => `  ${s.slice(path.length + 1).padEnd(10)} ${HELP[s]!.summary}`),
        ]
      : []),
    ...(h.flags?.length ? ["", "flags:", ...h.flags.map(([f, m]) => `  ${f.padEnd(width)}  ${m}`)] : []),
    "",
    "example:",
    `  ${h.example}`,
    "",
  ].join("\n");
}

/** `pgshift --help`: the commands, one line each. */
export function topUsage(): string {
  const top = Object.keys(HELP).filter((k) => !k.includes(" "));
  return [
    "usage: pgshift <command> [flags]",
    "",
    "commands (each answers --help):",
    ...top.map((k) => `  ${k.padEnd(7)} ${HELP[k]!.summary}`),
    "",
    "example:",
    "  pgshift serve --help",
    "",
  ].join("\n");
}

/** The help path an argv names: the command, and its subcommand when it has help of its own. */
export function helpPath(command: string, rest: string[]): string {
  const sub = rest.find((a) => !a.startsWith("-"));
  return sub && HELP[`${command} ${sub}`] ? `${command} ${sub}` : command;
}
