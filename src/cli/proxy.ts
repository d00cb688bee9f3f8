import { parseArgs } from "node:util";
import { InvalidArgumentError } from "../domain/errors.js";
import { XdsTcpProxy } from "../proxy/xds-tcp-proxy.js";
import { clientTls, CLIENT_TLS_OPTIONS } from "../security/client-tls.js";

/** The flags its parser takes: `pgshift help` describes each, and a test holds the two to each other. */
export const PROXY_OPTIONS = {
  xds: { type: "string" },
  "node-id": { type: "string" },
  listen: { type: "string", multiple: true },
  ...CLIENT_TLS_OPTIONS,
} as const;

export async function proxyCommand(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: PROXY_OPTIONS,
    strict: true,
  });
  if (!values.xds) throw new InvalidArgumentError("--xds is required: the service's xDS address, e.g. 127.0.0.1:18000");
  if (!values["node-id"])
    throw new InvalidArgumentError("--node-id is required: this proxy's name as the service will show it");
  const overrides = new Map<string, number>();
  for (const l of values.listen ?? []) {
    const [db, port] = l.split("=");
    if (!db || !port || !Number.isInteger(Number(port))) throw new InvalidArgumentError(`--listen ${l}: use DB=PORT`);
    overrides.set(db, Number(port));
  }
  const proxy = new XdsTcpProxy({
    xds: values.xds,
    nodeId: values["node-id"],
    listenPort: (name, declared) => overrides.get(name) ?? declared,
    tls: clientTls(values),
  });
  proxy.on("listening", (name: string, port: number) =>
    process.stdout.write(JSON.stringify({ listener: name, port }) + "\n"),
  );
  proxy.on("nack", (type: string, version: string, message: string) =>
    process.stderr.write(JSON.stringify({ nack: { type, version, message } }) + "\n"),
  );
  proxy.on("error", (e: Error) => process.stderr.write(JSON.stringify({ error: e.message }) + "\n"));
  await proxy.start();
  const stop = () => void proxy.stop().then(() => process.exit(0));
  process.once("SIGTERM", stop);
  process.once("SIGINT", stop);
}
