/** Structured logs, one JSON object per line on stderr, so stdout stays free for command output. */
export type LogLevel = "debug" | "info" | "warn" | "error";
const ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  child(fields: Record<string, unknown>): Logger;
}

export function isLogLevel(s: string): s is LogLevel {
  return s in ORDER;
}

export function createLogger(level: LogLevel = "info", base: Record<string, unknown> = {}): Logger {
  const emit = (l: LogLevel, msg: string, fields?: Record<string, unknown>) => {
    if (ORDER[l] < ORDER[level]) return;
    const line = { t: new Date().toISOString(), level: l, msg, ...base, ...fields };
    process.stderr.write(JSON.stringify(line, (_k, v) => (typeof v === "bigint" ? v.toString() : v)) + "\n");
  };
  return {
    debug: (m, f) => emit("debug", m, f),
    info: (m, f) => emit("info", m, f),
    warn: (m, f) => emit("warn", m, f),
    error: (m, f) => emit("error", m, f),
    child: (fields) => createLogger(level, { ...base, ...fields }),
  };
}
