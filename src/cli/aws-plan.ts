import { parseArgs } from "node:util";
import { InvalidArgumentError } from "../domain/errors.js";
import { awsPlan } from "../providers/aws/plan.js";

/** The flags its parser takes: `pgshift help` describes each, and a test holds the two to each other. */
export const PLAN_OPTIONS = {
  source: { type: "string" },
  target: { type: "string" },
  fence: { type: "string", default: "network" },
  "deny-security-group": { type: "string" },
  "instance-class": { type: "string", default: "db.r6g.large" },
  "engine-version": { type: "string", default: "the source's" },
  "cluster-parameter-group": { type: "string" },
  cloudwatch: { type: "boolean", default: false },
  retirement: { type: "string", default: "stop" },
  json: { type: "boolean", default: false },
} as const;

/** `pgshift ctl plan`: the AWS calls a migration will make, in order, without making them. */
export function awsPlanCommand(argv: string[]): void {
  const { values } = parseArgs({
    args: argv,
    options: PLAN_OPTIONS,
    strict: true,
  });
  if (!values.source || !values.target)
    throw new InvalidArgumentError(
      "--source (the RDS instance) and --target (the Aurora cluster to create) are required",
    );
  if (values.fence !== "sql" && values.fence !== "network")
    throw new InvalidArgumentError(`--fence must be sql or network; got "${values.fence}"`);
  if (values.retirement !== "stop" && values.retirement !== "delete")
    throw new InvalidArgumentError(`--retirement must be stop or delete; got "${values.retirement}"`);
  if (values.fence === "network" && !values["deny-security-group"]) {
    throw new InvalidArgumentError(
      "--fence network needs --deny-security-group sg-…: a group that allows no inbound traffic",
    );
  }
  const plan = awsPlan({
    replica: {
      sourceId: values.source,
      clusterId: values.target,
      instanceId: `${values.target}-1`,
      instanceClass: values["instance-class"],
      engineVersion: values["engine-version"],
      owner: "<migration id>",
      clusterParameterGroup: values["cluster-parameter-group"],
    },
    fence: values.fence,
    denyGroup: values["deny-security-group"],
    cloudwatch: values.cloudwatch,
    retirement: values.retirement,
  });
  if (values.json) {
    for (const p of plan) process.stdout.write(JSON.stringify(p) + "\n");
    return;
  }
  let phase = "";
  for (const p of plan) {
    if (p.phase !== phase) process.stdout.write(`${(phase = p.phase)}\n`);
    process.stdout.write(`  ${p.action.padEnd(34)} ${p.resource.padEnd(24)} ${p.why}\n`);
  }
}
