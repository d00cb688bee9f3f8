import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { InvalidArgumentError } from "./errors.js";
import { isLogLevel, type LogLevel } from "./telemetry/log.js";

export interface ServiceConfig {
  host: string;
  /** The API port (gRPC, Connect, gRPC-Web, health, reflection); 0 picks a free one. */
  port: number;
  dataDir: string;
  databaseUrl?: string;
  logLevel: LogLevel;
  /** How long SIGTERM waits for in-flight calls before closing them. */
  drainMs: number;
}

function port(name: string, v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new InvalidArgumentError(`${name} must be a port number from 0 to 65535; got "${v}"`);
  return n;
}

/** Flags win over environment variables, which win over defaults. */
export function parseServiceConfig(argv: string[], env: NodeJS.ProcessEnv = process.env): ServiceConfig {
  const { values } = parseArgs({
    args: argv,
    options: {
      host: { type: "string" },
      port: { type: "string" },
      "data-dir": { type: "string" },
      "database-url": { type: "string" },
      "log-level": { type: "string" },
      "drain-ms": { type: "string" },
    },
    strict: true,
  });
  const logLevel = values["log-level"] ?? env.PGSHIFT_LOG_LEVEL ?? "info";
  if (!isLogLevel(logLevel)) throw new InvalidArgumentError(`log level must be debug, info, warn or error; got "${logLevel}"`);
  const drain = Number(values["drain-ms"] ?? env.PGSHIFT_DRAIN_MS ?? 10_000);
  if (!Number.isFinite(drain) || drain < 0) throw new InvalidArgumentError("drain-ms must be a number of milliseconds");
  return {
    host: values.host ?? env.PGSHIFT_HOST ?? "127.0.0.1",
    port: port("port", values.port ?? env.PGSHIFT_PORT ?? "50051"),
    dataDir: resolve(values["data-dir"] ?? env.PGSHIFT_DATA_DIR ?? ".pgshift"),
    databaseUrl: values["database-url"] ?? (env.DATABASE_URL || undefined),
    logLevel,
    drainMs: drain,
  };
}
