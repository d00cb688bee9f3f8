#!/usr/bin/env node
import { parseServiceConfig } from "../config.js";
import { PgshiftError } from "../domain/errors.js";
import { createLogger } from "../telemetry/log.js";

/**
 * Each command's module is loaded when it runs, not at start: a replica
 * restarted inside a cutover's fenced window loads only what serving needs.
 */
async function usage(): Promise<string> {
  const [{ CTL_USAGE }, { LOCAL_USAGE }, { PROXY_USAGE }] = await Promise.all([import("./ctl.js"), import("./local.js"), import("./proxy.js")]);
  return `usage: pgshift <command> [flags]

commands:
  serve    run the migration service
           --port N (PGSHIFT_PORT, default 50051; 0 picks a free port)
           --host H (PGSHIFT_HOST, default 127.0.0.1)
           --xds-port N (PGSHIFT_XDS_PORT, default 18000; 0 picks a free port): ADS for the proxies
           --data-dir DIR (PGSHIFT_DATA_DIR, default ./.pgshift)
           --database-url URL (DATABASE_URL; without it the service runs its own PostgreSQL under the data dir)
           --log-level debug|info|warn|error (PGSHIFT_LOG_LEVEL, default info)
           --drain-ms N (PGSHIFT_DRAIN_MS, default 10000)
           --lease-ms N (PGSHIFT_LEASE_MS, default 10000): a dead replica's migrations move after this
           --engine on|off (PGSHIFT_ENGINE, default on): off serves the API only
           --metrics-port N (PGSHIFT_METRICS_PORT): Prometheus metrics at /metrics
           --baseline-sample-ms N (PGSHIFT_BASELINE_SAMPLE_MS, default 2000): each baseline sample's length, before and after cutover
${CTL_USAGE}${LOCAL_USAGE}${PROXY_USAGE}  demo     a whole migration under a live write load, shown and verified [--rollback] [--rows N] [--rate N] [--window S] [--keep]
`;
}

async function serve(argv: string[]): Promise<void> {
  const config = parseServiceConfig(argv);
  const log = createLogger(config.logLevel);
  const { startService } = await import("../service.js");
  const service = await startService(config, log);
  // Tests and scripts read the port from this line.
  process.stdout.write(JSON.stringify({ listening: { host: config.host, port: service.port, xdsPort: service.xdsPort } }) + "\n");
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
  switch (command) {
    case "serve":
      return serve(rest);
    case "local":
      return (await import("./local.js")).localCommand(rest);
    case "proxy":
      return (await import("./proxy.js")).proxyCommand(rest);
    case "demo":
      return (await import("./demo.js")).demoCommand(rest);
    case "ctl":
      return (await import("./ctl.js")).ctlCommand(rest);
    case undefined:
    case "help":
    case "--help":
      process.stdout.write(await usage());
      return;
    default:
      process.stderr.write(`unknown command "${command}"\n\n${await usage()}`);
      process.exit(2);
  }
}

main().catch((e: unknown) => {
  const msg = e instanceof PgshiftError ? e.rawMessage : e instanceof Error ? e.message : String(e);
  process.stderr.write(`pgshift: ${msg}\n`);
  process.exit(1);
});
