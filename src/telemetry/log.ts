import { context, trace } from "@opentelemetry/api";
import { pino, type Logger as Pino } from "pino";
import { migrationTraceId } from "./trace-ids.js";

/** Structured logs (pino), one JSON object per line on stderr, so stdout stays free for command output. */
export type LogLevel = "debug" | "info" | "warn" | "error";
const LEVELS: readonly LogLevel[] = ["debug", "info", "warn", "error"];

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  child(fields: Record<string, unknown>): Logger;
}

export function isLogLevel(s: string): s is LogLevel {
  return (LEVELS as readonly string[]).includes(s);
}

/** Keys whose values never reach a log line, at any depth pino's redaction reaches. */
const SECRET_KEYS = [
  "password",
  "passwd",
  "secret",
  "token",
  "connectionString",
  "databaseUrl",
  "PGPASSWORD",
  "authorization",
];
export const REDACTED_PATHS = SECRET_KEYS.flatMap((k) => [k, `*.${k}`, `*.*.${k}`]);

/** Credentials inside text (a connection URL, a conninfo, an error quoting one) are masked too. */
export function maskSecrets(s: string): string {
  return s
    .replace(/(\b[a-z][a-z0-9+.-]*:\/\/[^:/@\s]+:)[^@\s]+@/gi, "$1[redacted]@")
    .replace(/\b(password|sslpassword)\s*=\s*('(?:[^'\\]|\\.)*'|\S+)/gi, "$1=[redacted]");
}

function masked(fields: Record<string, unknown> | undefined): Record<string, unknown> {
  if (!fields) return {};
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(fields)) out[k] = typeof v === "string" ? maskSecrets(v) : v;
  return out;
}

function wrap(p: Pino): Logger {
  return {
    debug: (m, f) => p.debug(masked(f), maskSecrets(m)),
    info: (m, f) => p.info(masked(f), maskSecrets(m)),
    warn: (m, f) => p.warn(masked(f), maskSecrets(m)),
    error: (m, f) => p.error(masked(f), maskSecrets(m)),
    child: (fields) => wrap(p.child(masked(fields))),
  };
}

/**
 * Each line carries the active span's trace and span ids; a line about a migration (a `migration` field) outside
 * any span carries its trace id, the one every span of that migration has.
 */
export function createLogger(
  level: LogLevel = "info",
  base: Record<string, unknown> = {},
  destination: NodeJS.WritableStream | number = 2,
): Logger {
  const root = pino(
    {
      level,
      base: { service: "pgshift", pid: process.pid },
      messageKey: "msg",
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      redact: { paths: REDACTED_PATHS, censor: "[redacted]" },
      mixin(_obj, _level, logger) {
        const span = trace.getSpan(context.active())?.spanContext();
        if (span && trace.isSpanContextValid(span)) return { trace_id: span.traceId, span_id: span.spanId };
        const migration = (logger as Pino).bindings().migration;
        return typeof migration === "string" ? { trace_id: migrationTraceId(migration) } : {};
      },
    },
    typeof destination === "number" ? pino.destination({ dest: destination, sync: true }) : destination,
  );
  return wrap(Object.keys(base).length ? root.child(masked(base)) : root);
}
