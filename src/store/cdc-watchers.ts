import { sql, type Kysely } from "kysely";
import type { Database } from "./schema.js";

/** A watch not refreshed for this long is a consumer that went away without saying so (its replica died). */
export const WATCHER_STALE_MS = 20_000;

/**
 * The inventory of CDC consumers that follow their directives: who watches
 * which slot, refreshed while the watch is open, so every replica lists the
 * consumers connected to any of them.
 */
export class CdcWatchers {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly replicaId: string,
  ) {}

  async seen(databaseName: string, slotName: string, consumerId: string): Promise<void> {
    await this.db
      .insertInto("cdc_watchers")
      .values({
        database_name: databaseName,
        slot_name: slotName,
        consumer_id: consumerId,
        replica_id: this.replicaId,
        last_seen: new Date(),
      })
      .onConflict((oc) =>
        oc
          .columns(["database_name", "slot_name", "consumer_id"])
          .doUpdateSet({ replica_id: this.replicaId, last_seen: new Date() }),
      )
      .execute();
  }

  async gone(databaseName: string, slotName: string, consumerId: string): Promise<void> {
    await this.db
      .deleteFrom("cdc_watchers")
      .where("database_name", "=", databaseName)
      .where("slot_name", "=", slotName)
      .where("consumer_id", "=", consumerId)
      .where("replica_id", "=", this.replicaId)
      .execute();
  }

  /** slot name -> consumer ids watching it now, for one logical database. */
  async of(databaseName: string): Promise<Map<string, string[]>> {
    const rows = await this.db
      .selectFrom("cdc_watchers")
      .select(["slot_name", "consumer_id"])
      .where("database_name", "=", databaseName)
      .where(sql<boolean>`last_seen > now() - ${`${WATCHER_STALE_MS} milliseconds`}::interval`)
      .orderBy("consumer_id")
      .execute();
    const out = new Map<string, string[]>();
    for (const r of rows) out.set(r.slot_name, [...(out.get(r.slot_name) ?? []), r.consumer_id]);
    return out;
  }
}
