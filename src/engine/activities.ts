import {
  drainAndPause,
  inventory,
  observeReaders,
  releaseSourceSlots,
  resumeOnSource,
  restoreOnTarget,
  rollbackSlots,
  settleOnSource,
  closeReaderWatch,
} from "../cdc/coordinator.js";
import { captureBaseline } from "../checks/baseline.js";
import { targetWritable } from "../checks/target-writable.js";
import {
  coverNewTables,
  drainReverseReplication,
  prepareReverseReplication,
  probeReversePath,
  reverseBacklog,
  reserveReverseSlots,
  flushReverseCommits,
  startReverseReplication,
  stopReverseReplication,
} from "../replication/reverse.js";
import { readGuardrailBlockers } from "../checks/guardrails.js";
import { readSchemaDrift } from "../checks/schema-drift.js";
import { readSchemaInventory } from "../checks/schema-inventory.js";
import { carryLargeObjectsBack } from "../replication/large-objects.js";
import { installDdlCapture, readCapturedDdl } from "../replication/ddl-capture.js";
import { compareDatabase, compareDatabases } from "../checks/data-compare.js";
import { HeldSnapshots, type Side } from "../checks/held-snapshots.js";
import type { InstanceRef, Provider } from "../providers/provider.js";
import type { Activities } from "./step-env.js";

/** Between two ranges' checksums: the comparison reads the whole database, and the application comes first. */
const COMPARE_THROTTLE_MS = 5;

const held = new HeldSnapshots();

function bothSides(provider: Provider, source: InstanceRef, target: InstanceRef, databases: string[]): Side[] {
  return databases.flatMap((database) => [
    { side: "source" as const, database, port: provider.sql(source, database) },
    { side: "target" as const, database, port: provider.sql(target, database) },
  ]);
}

/** The activities the service runs: real CDC coordination, reverse replication and probes. */
export const realActivities: Activities = {
  cdc: {
    inventory,
    drainAndPause,
    restoreOnTarget,
    observeReaders,
    releaseSourceSlots,
    rollbackSlots,
    settleOnSource,
    resumeOnSource,
    closeReaderWatch,
  },
  schema: {
    inventory: readSchemaInventory,
    guardrails: (provider, ref, maxAgeMs) => readGuardrailBlockers(provider.sql(ref), maxAgeMs),
    drift: readSchemaDrift,
    captureDdl: installDdlCapture,
    capturedDdl: async (provider, target, databases) =>
      (await Promise.all(databases.map((db) => readCapturedDdl(provider, target, db)))).flat(),
  },
  reverse: {
    prepare: prepareReverseReplication,
    carryLargeObjects: carryLargeObjectsBack,
    coverNewTables,
    probe: probeReversePath,
    reserve: reserveReverseSlots,
    start: startReverseReplication,
    flushCommits: flushReverseCommits,
    drain: drainReverseReplication,
    stop: stopReverseReplication,
    backlog: reverseBacklog,
  },
  verify: {
    open: (provider, source, target, databases, key) => held.open(key, bothSides(provider, source, target, databases)),
    hold: (provider, source, target, databases, key) => held.hold(key, bothSides(provider, source, target, databases)),
    compareHeld: async (key, databases, signal) => {
      const h = held.take(key);
      if (!h) return undefined;
      try {
        return await compareDatabases(databases, signal, (db, sig) =>
          compareDatabase(db, h.sql("source", db)!, h.sql("target", db)!, {
            throttleMs: COMPARE_THROTTLE_MS,
            signal: sig,
          }),
        );
      } finally {
        h.release();
      }
    },
  },
  probes: {
    baseline: (provider, ref, sampleMs) => captureBaseline(provider.sql(ref), sampleMs),
    targetWritable: (provider, ref) => targetWritable(provider.sql(ref)),
  },
};
