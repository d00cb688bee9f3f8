import { readFileSync } from "node:fs";
import { CloudWatchClient } from "@aws-sdk/client-cloudwatch";
import { RDSClient } from "@aws-sdk/client-rds";
import { Signer } from "@aws-sdk/rds-signer";
import type { AwsCredentialIdentity } from "@aws-sdk/types";
import { SecretsManagerClient } from "@aws-sdk/client-secrets-manager";
import { InvalidArgumentError } from "../../domain/errors.js";
import { AwsProvider } from "./aws-provider.js";

export interface AwsSettings {
  region: string;
  /** An endpoint override: a local RDS endpoint speaking AWS's wire protocol. */
  endpoint?: string;
  fence: "sql" | "network";
  denySecurityGroup?: string;
  instanceClass: string;
  /** The target clusters' parameter group when a spec names none. */
  clusterParameterGroup?: string;
  /** How sessions to the instances are encrypted; verify-full checks them against the CA bundle file. */
  dbSsl: "verify-full" | "require" | "disable";
  caBundleFile?: string;
  /** IAM database authentication as this user for the service's own sessions. */
  iamDbUser?: string;
  /** Read replication figures from CloudWatch too. */
  cloudwatch?: boolean;
}

/**
 * An IAM database authentication token for a user at an endpoint: signed locally (SigV4, @aws-sdk/rds-signer) with
 * the credentials of the default chain, valid 15 minutes. No call to AWS is made.
 */
export function iamTokens(
  region: string,
  credentials?: AwsCredentialIdentity,
): (host: string, port: number, user: string) => Promise<string> {
  return (hostname, port, username) =>
    new Signer({ hostname, port, username, region, ...(credentials ? { credentials } : {}) }).getAuthToken();
}

/** AWS's RDS certificate bundle, read once at start: a wrong path is said now, not at the first connection. */
function readCaBundle(file: string | undefined): string {
  try {
    const pem = readFileSync(file ?? "", "utf8");
    if (!pem.includes("BEGIN CERTIFICATE")) throw new Error("no PEM certificate in it");
    return pem;
  } catch (e) {
    throw new InvalidArgumentError(
      `--aws-ca-bundle ${file}: ${(e as Error).message}; give AWS's RDS certificate bundle (global-bundle.pem)`,
    );
  }
}

/** The AWS provider with SDK clients on the default credential chain (environment, profile, instance or task role). */
export async function createAwsProvider(s: AwsSettings): Promise<AwsProvider> {
  const common = { region: s.region, ...(s.endpoint ? { endpoint: s.endpoint } : {}) };
  return new AwsProvider({
    rds: new RDSClient(common),
    secrets: new SecretsManagerClient(common),
    fence: s.fence,
    denySecurityGroup: s.denySecurityGroup,
    instanceClass: s.instanceClass,
    clusterParameterGroup: s.clusterParameterGroup,
    ssl:
      s.dbSsl === "verify-full" ? { mode: "verify-full", caBundle: readCaBundle(s.caBundleFile) } : { mode: s.dbSsl },
    iam: s.iamDbUser ? { user: s.iamDbUser, token: iamTokens(s.region) } : undefined,
    cloudwatch: s.cloudwatch ? new CloudWatchClient(common) : undefined,
    // Against a local endpoint, states change in fractions of a second: look often.
    control: s.endpoint ? { pollMs: 200 } : undefined,
  });
}
