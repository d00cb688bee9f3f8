import { createHash } from "node:crypto";

/**
 * A migration's trace ids are derived from what the store holds, not drawn at random: every replica that drives
 * a part of it (after a crash, a takeover) and every log line about it lands in the one trace.
 */
export function migrationTraceId(migrationId: string): string {
  const hex = migrationId.replace(/-/g, "").toLowerCase();
  return /^[0-9a-f]{32}$/.test(hex) && !/^0+$/.test(hex) ? hex : digest(migrationId, 32);
}

/** The span id of one part of a migration's trace, e.g. ("root"), ("phase", "PROMOTING", enteredAt). */
export function migrationSpanId(migrationId: string, ...parts: string[]): string {
  return digest([migrationId, ...parts].join("\u0000"), 16);
}

function digest(s: string, hexChars: number): string {
  const h = createHash("sha256").update(s).digest("hex").slice(0, hexChars);
  // An all-zero id is invalid in W3C trace context.
  return /^0+$/.test(h) ? "1".padStart(hexChars, "0") : h;
}
