import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parseServiceConfig } from "../../src/config.js";
import { createAwsProvider } from "../../src/providers/aws/create.js";

describe("the AWS settings of `pgshift serve`", () => {
  const dir = mkdtempSync(join(tmpdir(), "pgshift-aws-config-"));
  const aws = (...flags: string[]) => parseServiceConfig(["--insecure", "--aws-region", "eu-west-1", ...flags], {}).aws;

  it("checks the instances' certificates by default, and says what it needs to", () => {
    expect(() => aws()).toThrow(/--aws-ca-bundle FILE: AWS's RDS certificate bundle \(global-bundle\.pem/);
    expect(aws("--aws-ca-bundle", "/etc/rds/global-bundle.pem")).toMatchObject({ dbSsl: "verify-full", caBundleFile: "/etc/rds/global-bundle.pem" });
    expect(aws("--aws-db-ssl", "require")).toMatchObject({ dbSsl: "require" });
    expect(() => aws("--aws-db-ssl", "prefer")).toThrow(/--aws-db-ssl must be verify-full, require or disable; got "prefer"/);
    expect(() => parseServiceConfig(["--insecure", "--aws-ca-bundle", "x.pem"], {})).toThrow(/need --aws-region/);
  });

  it("reads the CA bundle at start: a file that is not one is refused then, not at the first connection", async () => {
    const bad = join(dir, "not-a-bundle.pem");
    writeFileSync(bad, "hello");
    const settings = { region: "eu-west-1", fence: "sql" as const, instanceClass: "db.r6g.large", dbSsl: "verify-full" as const };
    await expect(createAwsProvider({ ...settings, caBundleFile: bad })).rejects.toThrow(/--aws-ca-bundle .*no PEM certificate in it/);
    await expect(createAwsProvider({ ...settings, caBundleFile: join(dir, "absent.pem") })).rejects.toThrow(/ENOENT/);
  });
});
