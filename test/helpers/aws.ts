import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import type { IamPolicy } from "../../testing/aws-emulator/iam.js";

/** The access key the local RDS endpoint verifies signatures with, and the service signs with. */
export const EMULATOR_KEY = { accessKeyId: "AKIDEMULATOR", secretAccessKey: "emulator-secret" };

/** The service's environment for that key: the SDK's default credential chain reads it. */
export const EMULATOR_ENV = {
  AWS_ACCESS_KEY_ID: EMULATOR_KEY.accessKeyId,
  AWS_SECRET_ACCESS_KEY: EMULATOR_KEY.secretAccessKey,
};

/** The IAM policy pgshift ships, which the endpoint holds every call to. */
export function shippedIamPolicy(): IamPolicy {
  return JSON.parse(
    readFileSync(resolve(import.meta.dirname, "../../deploy/aws/iam-policy.json"), "utf8"),
  ) as IamPolicy;
}
