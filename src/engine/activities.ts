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
import type { Activities } from "./step-env.js";

/** The activities the service runs: real CDC coordination, reverse replication and probes. */
export const realActivities: Activities = {
  cdc: { inventory, drainAndPause, restoreOnTarget, observeReaders, releaseSourceSlots, rollbackSlots, settleOnSource, resumeOnSource, closeReaderWatch },
  reverse: {
    prepare: prepareReverseReplication,
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
