import { parseArgs } from "node:util";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { Health, HealthCheckResponse_ServingStatus as Status } from "../gen/health/v1/health_pb.js";

/**
 * `pgshift health`: one grpc.health.v1 Check, for a container's health check. Exit 0 when SERVING, 1 when the
 * server answers anything else, 69 (unavailable) when it does not answer within the deadline.
 */
export async function healthCommand(argv: string[]): Promise<void> {
  const { values } = parseArgs({ args: argv, options: { api: { type: "string" }, service: { type: "string", default: "" } }, strict: true });
  const api = values.api ?? process.env.PGSHIFT_API ?? "http://127.0.0.1:50051";
  const client = createClient(Health, createGrpcTransport({ baseUrl: api }));
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
