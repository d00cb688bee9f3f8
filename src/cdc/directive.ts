import type { MigrationRow } from "../store/migration-repo.js";

export type SlotActionName = "KEEP_READING" | "PAUSE" | "RESUME";

const REANCHOR =
  "; its WAL positions do not continue the other side's: start at resume_from_lsn, not at your own last position";

/** What a consumer of one slot is to do now: the consumer-facing reading of a migration's CDC state. */
export interface Directive {
  action: SlotActionName;
  endpoint?: { host: string; port: number };
  slotName: string;
  database: string;
  drainToLsn: string;
  resumeFromLsn: string;
  migrationId: string;
  reason: string;
  since: string;
  /** RESUME: the sides' positions do not continue each other; start at resumeFromLsn, whatever was stored. */
  reanchor?: boolean;
}

/**
 * The directive for `slotName` given the newest migration of its logical
 * database (or none) and where the database is routed now. A slot the
 * migration does not coordinate is read where it is.
 */
export function directiveFor(
  row: MigrationRow | undefined,
  slotName: string,
  routed?: { host: string; port: number },
): Directive {
  const base = { slotName, database: "", drainToLsn: "", resumeFromLsn: "", migrationId: row?.id ?? "", since: "" };
  const rec = row?.state.cdcSlots?.find((s) => s.slotName === slotName);
  const cdc = row?.state.cdc;
  if (!row || !rec || !cdc) {
    return {
      ...base,
      action: "KEEP_READING",
      endpoint: routed,
      reason: row ? "the migration does not coordinate this slot (yet)" : "no migration concerns this database",
    };
  }
  const common = { ...base, database: rec.database, endpoint: cdc.endpoint, since: cdc.since };
  switch (cdc.stage) {
    case "DRAINING":
    case "PAUSED":
      return {
        ...common,
        action: "PAUSE",
        drainToLsn: cdc.drainToLsn ?? "",
        reason: `confirm ${cdc.drainToLsn} on ${cdc.side === "source" ? "the source" : "the target"}, then stop: the primary is changing`,
      };
    case "ON_TARGET":
      return {
        ...common,
        action: "RESUME",
        resumeFromLsn: rec.targetConsistentLsn ?? "",
        reason: `the slot was recreated on the promoted target${cdc.lsnDiscontinuous ? REANCHOR : ""}`,
        reanchor: Boolean(cdc.lsnDiscontinuous),
      };
    case "ON_SOURCE":
      return cdc.resumed
        ? {
            ...common,
            action: "RESUME",
            resumeFromLsn: rec.sourceResumeLsn ?? rec.confirmedFlushLsn,
            reason: `back on the source${cdc.lsnDiscontinuous ? REANCHOR : ""}`,
            reanchor: Boolean(cdc.lsnDiscontinuous),
          }
        : { ...common, action: "KEEP_READING", reason: "the migration has not reached cutover" };
  }
}
