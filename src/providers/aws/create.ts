import { RDSClient } from "@aws-sdk/client-rds";
import { SecretsManagerClient } from "@aws-sdk/client-secrets-manager";
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
    // Against a local endpoint, states change in fractions of a second: look often.
    control: s.endpoint ? { pollMs: 200 } : undefined,
  });
}
