import http from "node:http";
import https from "node:https";
import type { AddressInfo } from "node:net";
import { parseArgs } from "node:util";
import { InvalidArgumentError } from "../domain/errors.js";
import { clientTls, CLIENT_TLS_OPTIONS, type ClientTls } from "../security/client-tls.js";

/** The flags its parser takes: `pgshift help` describes each, and a test holds the two to each other. */
export const CONSOLE_OPTIONS = {
  api: { type: "string" },
  ...CLIENT_TLS_OPTIONS,
  port: { type: "string", default: "8080" },
  actor: { type: "string" },
} as const;

export interface ConsoleProxy {
  url: string;
  close(): Promise<void>;
}

/**
 * The web console for a browser on an operator's own machine, against a service that requires mutual TLS (as
 * `kubectl proxy` does for its API): a listener on loopback only that forwards each request to the API with the
 * operator's client certificate. The service authorizes that identity as for `ctl`, so the console shows and offers
 * exactly what the operator may see and do. `actor` is added as x-pgshift-actor, the human's stated name.
 */
export async function startConsoleProxy(
  api: string,
  tls: ClientTls,
  port: number,
  actor?: string,
): Promise<ConsoleProxy> {
  const target = new URL(api);
  if (target.protocol !== "https:")
    throw new InvalidArgumentError(`--api ${api}: the console proxy is for a mutual-TLS service (https://…)`);
  const agent = new https.Agent({ ca: tls.ca, cert: tls.cert, key: tls.key, keepAlive: true });
  const server = http.createServer((req, res) => {
    const headers: http.OutgoingHttpHeaders = { ...req.headers, host: target.host };
    delete headers.connection;
    if (actor) headers["x-pgshift-actor"] = actor;
    const up = https.request(
      { host: target.hostname, port: target.port || 443, method: req.method, path: req.url, headers, agent },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        // Streams (WatchMigration, WatchCampaign) pass through as they come.
        answer.pipe(res);
      },
    );
    up.on("error", (e) => {
      if (!res.headersSent) res.writeHead(502, { "content-type": "text/plain" });
      res.end(`the pgshift API at ${api} did not answer: ${e.message}\n`);
    });
    req.pipe(up);
    res.on("close", () => up.destroy());
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => resolve());
  });
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
        agent.destroy();
      }),
  };
}

/** `pgshift console --api https://… --ca … --cert … --key … [--port 8080]`: serves until Ctrl-C. */
export async function consoleCommand(argv: string[]): Promise<void> {
  const { values } = parseArgs({ args: argv, options: CONSOLE_OPTIONS, strict: true });
  const tls = clientTls(values);
  const api = values.api ?? process.env.PGSHIFT_API ?? "https://127.0.0.1:50051";
  if (!tls) {
    process.stdout.write(
      `a service run --insecure serves its console itself: open ${api.replace(/^https:/, "http:")}/ in a browser\n`,
    );
    return;
  }
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535)
    throw new InvalidArgumentError(`--port ${values.port} is not a port number`);
  const proxy = await startConsoleProxy(api, tls, port, values.actor);
  process.stdout.write(
    `console: ${proxy.url} (as the identity of ${values.cert ?? "PGSHIFT_CLIENT_CERT"}; Ctrl-C ends it)\n`,
  );
  await new Promise<void>((resolve) => process.once("SIGINT", () => resolve()));
  await proxy.close();
}
