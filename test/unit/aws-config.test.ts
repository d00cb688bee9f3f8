import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CloudWatchClient, GetMetricDataCommand } from "@aws-sdk/client-cloudwatch";
import { DescribeDBInstancesCommand, RDSClient } from "@aws-sdk/client-rds";
import { GetSecretValueCommand, SecretsManagerClient } from "@aws-sdk/client-secrets-manager";
import { mockClient } from "aws-sdk-client-mock";
import { describe, expect, it } from "vitest";
import { parseServiceConfig } from "../../src/config.js";
import { AwsProvider } from "../../src/providers/aws/aws-provider.js";
import { describeFigures, replicationFigures } from "../../src/providers/aws/cloudwatch.js";
import { createAwsProvider, iamTokens } from "../../src/providers/aws/create.js";

describe("the AWS settings of `pgshift serve`", () => {
  const dir = mkdtempSync(join(tmpdir(), "pgshift-aws-config-"));
  const aws = (...flags: string[]) => parseServiceConfig(["--insecure", "--aws-region", "eu-west-1", ...flags], {}).aws;

  it("checks the instances' certificates by default, and says what it needs to", () => {
    expect(() => aws()).toThrow(/--aws-ca-bundle FILE: AWS's RDS certificate bundle \(global-bundle\.pem/);
    expect(aws("--aws-ca-bundle", "/etc/rds/global-bundle.pem")).toMatchObject({
      dbSsl: "verify-full",
      caBundleFile: "/etc/rds/global-bundle.pem",
    });
    expect(aws("--aws-db-ssl", "require")).toMatchObject({ dbSsl: "require" });
    expect(() => aws("--aws-db-ssl", "prefer")).toThrow(
      /--aws-db-ssl must be verify-full, require or disable; got "prefer"/,
    );
    expect(() => parseServiceConfig(["--insecure", "--aws-ca-bundle", "x.pem"], {})).toThrow(/need --aws-region/);
  });

  it("reads the CA bundle at start: a file that is not one is refused then, not at the first connection", async () => {
    const bad = join(dir, "not-a-bundle.pem");
    writeFileSync(bad, "hello");
    const settings = {
      region: "eu-west-1",
      fence: "sql" as const,
      instanceClass: "db.r6g.large",
      dbSsl: "verify-full" as const,
    };
    await expect(createAwsProvider({ ...settings, caBundleFile: bad })).rejects.toThrow(
      /--aws-ca-bundle .*no PEM certificate in it/,
    );
    await expect(createAwsProvider({ ...settings, caBundleFile: join(dir, "absent.pem") })).rejects.toThrow(/ENOENT/);
  });
});

describe("IAM database authentication for the service's own sessions", () => {
  const aws = (...flags: string[]) =>
    parseServiceConfig(["--insecure", "--aws-region", "eu-west-1", "--aws-db-ssl", "require", ...flags], {}).aws;

  it("needs its user and TLS, and is refused half-given", () => {
    expect(aws("--aws-db-auth", "iam", "--aws-db-user", "pgshift")).toMatchObject({ iamDbUser: "pgshift" });
    expect(aws()?.iamDbUser).toBeUndefined();
    expect(() => aws("--aws-db-auth", "iam")).toThrow(/needs --aws-db-user U/);
    expect(() => aws("--aws-db-auth", "iam", "--aws-db-user", "pgshift", "--aws-db-ssl", "disable")).toThrow(
      /needs TLS/,
    );
    expect(() => aws("--aws-db-user", "pgshift")).toThrow(/--aws-db-user is for --aws-db-auth iam/);
    expect(() => aws("--aws-db-auth", "kerberos")).toThrow(/must be secret or iam/);
  });

  it("signs a token locally (SigV4, rds-db connect) for the endpoint and user, valid 15 minutes", async () => {
    const token = await iamTokens("eu-west-1", { accessKeyId: "AKIDEXAMPLE", secretAccessKey: "secret" })(
      "billing.abc.eu-west-1.rds.amazonaws.com",
      5432,
      "pgshift",
    );
    const url = new URL(`https://${token}`);
    expect(url.host).toBe("billing.abc.eu-west-1.rds.amazonaws.com:5432");
    expect(Object.fromEntries(url.searchParams)).toMatchObject({
      Action: "connect",
      DBUser: "pgshift",
      "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
      "X-Amz-Expires": "900",
      "X-Amz-SignedHeaders": "host",
    });
    expect(url.searchParams.get("X-Amz-Credential")).toMatch(/^AKIDEXAMPLE\/\d{8}\/eu-west-1\/rds-db\/aws4_request$/);
    expect(url.searchParams.get("X-Amz-Signature")).toMatch(/^[0-9a-f]{64}$/);
  });

  it("the service's sessions log in with a token; reverse replication, which must outlive one, keeps the master user's secret", async () => {
    const rds = mockClient(RDSClient);
    const secrets = mockClient(SecretsManagerClient);
    rds.on(DescribeDBInstancesCommand).resolves({
      DBInstances: [
        {
          DBInstanceIdentifier: "billing",
          Endpoint: { Address: "billing.abc.eu-west-1.rds.amazonaws.com", Port: 5432 },
          MasterUserSecret: { SecretArn: "arn:aws:secretsmanager:eu-west-1:123456789012:secret:rds!db-billing" },
        },
      ],
    });
    secrets
      .on(GetSecretValueCommand)
      .resolves({ SecretString: JSON.stringify({ username: "postgres", password: "master-password" }) });
    const tokens: string[] = [];
    const provider = new AwsProvider({
      rds: new RDSClient({ region: "eu-west-1" }),
      secrets: new SecretsManagerClient({ region: "eu-west-1" }),
      fence: "sql",
      instanceClass: "db.r6g.large",
      ssl: { mode: "require" },
      iam: {
        user: "pgshift",
        token: async (host, port, user) => (tokens.push(`${host}:${port}/${user}`), `token-for-${user}`),
      },
    });
    expect(await provider.sessionConfig({ id: "billing" }, "app")).toMatchObject({
      user: "pgshift",
      password: "token-for-pgshift",
      ssl: { rejectUnauthorized: false },
    });
    expect(tokens).toEqual(["billing.abc.eu-west-1.rds.amazonaws.com:5432/pgshift"]);
    expect(await provider.peerConnection({ id: "billing" }, "app")).toMatchObject({
      user: "postgres",
      password: "master-password",
      sslmode: "require",
    });
    rds.restore();
    secrets.restore();
  });
});

describe("CloudWatch's replication figures", () => {
  it("one GetMetricData for the replica cluster's lag and the source's slot and WAL figures; the newest value of each counts", async () => {
    const cw = mockClient(CloudWatchClient);
    const t = (m: number) => new Date(Date.UTC(2026, 10, 26, 12, m));
    cw.on(GetMetricDataCommand).resolves({
      MetricDataResults: [
        { Id: "replicalag", Timestamps: [t(1), t(3), t(2)], Values: [9, 0.25, 4] },
        { Id: "slotlag", Timestamps: [t(3)], Values: [3 * (1 << 20)] },
        { Id: "waldisk", Timestamps: [], Values: [] },
      ],
    });
    const f = await replicationFigures(
      new CloudWatchClient({ region: "eu-west-1" }),
      "billing",
      "billing-aurora",
      t(4),
    );
    expect(f).toEqual({ replicaLagSeconds: 0.25, oldestSlotLagBytes: 3 * (1 << 20), walDiskBytes: undefined });
    expect(describeFigures(f)).toBe(
      "CloudWatch: RDSToAuroraPostgreSQLReplicaLag 0.25s, OldestReplicationSlotLag 3.0 MiB",
    );
    const input = cw.commandCalls(GetMetricDataCommand)[0]!.args[0].input;
    expect(
      input.MetricDataQueries?.map((q) => [q.MetricStat?.Metric?.MetricName, q.MetricStat?.Metric?.Dimensions?.[0]]),
    ).toEqual([
      ["RDSToAuroraPostgreSQLReplicaLag", { Name: "DBClusterIdentifier", Value: "billing-aurora" }],
      ["OldestReplicationSlotLag", { Name: "DBInstanceIdentifier", Value: "billing" }],
      ["TransactionLogsDiskUsage", { Name: "DBInstanceIdentifier", Value: "billing" }],
    ]);
    expect(input.EndTime!.getTime() - input.StartTime!.getTime()).toBe(10 * 60_000);
    expect(describeFigures({})).toBe("CloudWatch: no datapoints yet");
    cw.restore();
  });
});
