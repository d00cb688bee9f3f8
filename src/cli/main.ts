#!/usr/bin/env node
import { parseServiceConfig } from "../config.js";
import { PgshiftError } from "../domain/errors.js";
import { createLogger } from "../telemetry/log.js";
import { helpFor, helpPath, topUsage, wantsHelp } from "./help.js";

/**
 * Each command's module is loaded when it runs, not at start: a replica
 * restarted inside a cutover's fenced window loads only what serving needs.
 */
async function serve(argv: string[]): Promise<void> {
  const config = parseServiceConfig(argv);
  const log = createLogger(config.logLevel);
  const { startService } = await import("../service/start.js");
  const service = await startService(config, log);
  // Tests and scripts read the port from this line.
  process.stdout.write(
    JSON.stringify({ listening: { host: config.host, port: service.port, xdsPort: service.xdsPort } }) + "\n",
  );
  const onSignal = (sig: string) => {
    log.info("signal", { sig });
    service.stop().then(
      () => process.exit(0),
      (e: unknown) => {
        log.error("shutdown failed", { error: String(e) });
        process.exit(1);
      },
    );
  };
  process.once("SIGTERM", () => onSignal("SIGTERM"));
  process.once("SIGINT", () => onSignal("SIGINT"));
}

async function main(): Promise<void> {
  const [command, ...rest] = process.argv.slice(2);
  if (command && wantsHelp(rest)) {
    const text = helpFor(helpPath(command, rest));
    if (text) return void process.stdout.write(text);
  }
  switch (command) {
    case "serve":
      return serve(rest);
    case "local":
      return (await import("./local.js")).localCommand(rest);
    case "proxy":
      return (await import("./proxy.js")).proxyCommand(rest);
    case "ctl":
      return (await import("./ctl.js")).ctlCommand(rest);
    case "dev-certs":
      return (await import("./dev-certs.js")).devCertsCommand(rest);
    case "console":
      return (await import("./console-proxy.js")).consoleCommand(rest);
    case "health":
      return (await import("./health.js")).healthCommand(rest);
    case undefined:
    case "help":
    case "--help":
    case "-h":
      process.stdout.write(topUsage());
      return;
    default:
      process.stderr.write(`unknown command "${command}"\n\n${topUsage()}`);
      process.exit(2);
  }
}

main().catch((e: unknown) => {
  const msg = e instanceof PgshiftError ? e.rawMessage : e instanceof Error ? e.message : String(e);
  process.stderr.write(`pgshift: ${msg}\n`);
  process.exit(1);
});
