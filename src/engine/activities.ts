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
import { targetWritable } from "../checks/verify.js";
import {
  drainReverseReplication,
  prepareReverseReplication,
  probeReversePath,
  reverseBacklog,
  startReverseReplication,
  stopReverseReplication,
} from "../replication/reverse.js";
import { readGuardrailBlockers } from "../checks/guardrails.js";
import { readSchemaDrift } from "../checks/schema-drift.js";
import { readSchemaInventory } from "../checks/schema-inventory.js";
import { carryLargeObjectsBack } from "../replication/large-objects.js";
import type { Activities } from "./step-env.js";

/** The activities the service runs: real CDC coordination, reverse replication and probes. */
export const realActivities: Activities = {
  cdc: { inventory, drainAndPause, restoreOnTarget, observeReaders, releaseSourceSlots, rollbackSlots, settleOnSource, resumeOnSource, closeReaderWatch },
  schema: {
    inventory: readSchemaInventory,
    guardrails: (provider, ref, maxAgeMs) => readGuardrailBlockers(provider.sql(ref), maxAgeMs),
    drift: readSchemaDrift,
  },
  reverse: {
    prepare: prepareReverseReplication,
    carryLargeObjects: carryLargeObjectsBack,
    probe: probeReversePath,
    start: startReverseReplication,
    drain: drainReverseReplication,
    stop: stopReverseReplication,
    backlog: reverseBacklog,
  },
  probes: {
    baseline: (provider, ref, sampleMs) => captureBaseline(provider.sql(ref), sampleMs),
    targetWritable: (provider, ref) => targetWritable(provider.sql(ref)),
  },
};
