import { Phase } from "../gen/migration/v1/migration_pb.js";

/** Phase names as stored and logged: the enum name without its PHASE_ prefix. */
export const PHASES = [
  "PENDING",
  "PREFLIGHT",
  "PROVISIONING",
  "REPLICATING",
  "READY_FOR_CUTOVER",
  "QUIESCING",
  "FINAL_SYNC",
  "CDC_PREPARE",
  "PROMOTING",
  "CDC_RESTORE",
  "ROUTING",
  "VERIFYING",
  "COMPLETED",
  "FINALIZED",
  "ROLLING_BACK",
  "ROLLED_BACK",
  "ABORTED",
  "FAILED",
] as const;
export type PhaseName = (typeof PHASES)[number];

/** Phases a migration never leaves: its source is free for another migration. */
export const TERMINAL_PHASES: readonly PhaseName[] = ["FINALIZED", "ROLLED_BACK", "ABORTED", "FAILED"];

export function isTerminal(p: PhaseName): boolean {
  return TERMINAL_PHASES.includes(p);
}

export function isPhaseName(s: string): s is PhaseName {
  return (PHASES as readonly string[]).includes(s);
}

export function phaseToProto(p: PhaseName): Phase {
  return Phase[`${p}` as keyof typeof Phase] as Phase;
}

export function phaseFromProto(p: Phase): PhaseName | undefined {
  const name = Phase[p];
  return name && isPhaseName(name) ? name : undefined;
}
