import { parseArgs } from "node:util";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { apiTransport, CLIENT_TLS_OPTIONS } from "./api-transport.js";
import { Health, HealthCheckResponse_ServingStatus as Status } from "../gen/health/v1/health_pb.js";

/** The flags its parser takes: `pgshift help` describes each, and a test holds the two to each other. */
export const HEALTH_OPTIONS = {
  api: { type: "string" },
  ...CLIENT_TLS_OPTIONS,
  service: { type: "string", default: "" },
} as const;

/**
 * `pgshift health`: one grpc.health.v1 Check, for a container's health check. Exit 0 when SERVING, 1 when the
 * server answers anything else, 69 (unavailable) when it does not answer within the deadline.
 */
export async function healthCommand(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: HEALTH_OPTIONS,
    strict: true,
  });
  const client = createClient(Health, apiTransport(values));
  try {
    const res = await client.check({ service: values.service }, { timeoutMs: 5000 });
    const status = Status[res.status] ?? String(res.status);
    process.stdout.write(JSON.stringify({ status }) + "\n");
    if (res.status !== Status.SERVING) process.exitCode = 1;
  } catch (e) {
    const ce = ConnectError.from(e);
    process.stderr.write(`${Code[ce.code]}: ${ce.rawMessage}\n`);
    process.exitCode = ce.code === Code.NotFound ? 1 : 69;
  }
}
