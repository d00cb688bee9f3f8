import type { Kysely } from "kysely";
import type { Database } from "../store/schema.js";

/**
 * A proxy's liveness follows the replica holding its stream: that replica
 * refreshes it every HEARTBEAT_MS; three missed refreshes (the replica died,
 * or lost the store) and it no longer counts as connected, so ROUTING does
 * not wait for it. It is recorded again when it reconnects to any replica.
 * Apart from the tracker (and so from gRPC): the engine's router reads it, and
 * a restarted replica drives its engine before it loads the xDS server.
 */
export const HEARTBEAT_MS = 1_000;
export const PROXY_STALE_MS = 3 * HEARTBEAT_MS;

/**
 * Streams recorded under a replica's identity by an incarnation that died are
 * gone with it: not connected, so ROUTING waits for none of them (each proxy
 * that reconnects is recorded again). Called at start, before the engine runs.
 */
export async function forgetStreamsOf(db: Kysely<Database>, replicaId: string): Promise<void> {
  await db.updateTable("proxy_status").set({ connected: false }).where("replica_id", "=", replicaId).execute();
}
