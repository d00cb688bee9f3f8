import { check, formatBytes, type CheckResult } from "../domain/check.js";
import { namesTable, type SchemaChoices } from "../domain/spec.js";
import type { DatabaseInventory, SchemaInventory } from "./schema-inventory.js";

/** "db: a, b; other: c" for the databases that have any. */
function perDatabase(inv: SchemaInventory, pick: (d: DatabaseInventory) => string[]): string {
  return inv.databases
    .filter((d) => pick(d).length > 0)
    .map((d) => `${d.database}: ${pick(d).join(", ")}`)
    .join("; ");
}

function count(inv: SchemaInventory, pick: (d: DatabaseInventory) => string[]): number {
  return inv.databases.reduce((n, d) => n + pick(d).length, 0);
}

/** The keyless tables that stay keyless: those the spec does not have made REPLICA IDENTITY FULL. */
function keyless(d: DatabaseInventory, choices: SchemaChoices): string[] {
  return d.keyless.filter((t) => !namesTable(choices.identityFull, d.database, t));
}

/**
 * Unlogged tables arrive empty on the target (physical replication does not carry their rows): each one fails
 * preflight unless the spec names it as disposable.
 */
export function unloggedCheck(inv: SchemaInventory, disposable: readonly string[]): CheckResult {
  const threshold = "no unlogged table, unless spec.schema_policy.disposable_unlogged_tables names it";
  const refused = inv.databases.flatMap((d) =>
    d.unlogged.filter((t) => !namesTable(disposable, d.database, t)).map((t) => ({ db: d.database, t })),
  );
  const accepted = count(inv, (d) => d.unlogged) - refused.length;
  if (refused.length > 0) {
    return check("schema.unlogged_tables", "FAIL", {
      measured: `unlogged: ${refused.map((r) => `${r.db}.${r.t}`).join(", ")}`,
      threshold,
      message: `${refused.length} unlogged table(s) would arrive empty on the target: physical replication does not carry their rows`,
      remedy: `make them logged (${refused.map((r) => `ALTER TABLE ${r.t} SET LOGGED`).join("; ")}, in their databases), or name them in spec.schema_policy.disposable_unlogged_tables if losing their rows is acceptable`,
    });
  }
  if (accepted > 0) {
    return check("schema.unlogged_tables", "WARN", {
      measured: `unlogged, named disposable by the spec: ${perDatabase(inv, (d) => d.unlogged)}`,
      threshold,
      message: `${accepted} unlogged table(s) arrive empty on the target, and a rollback does not bring the target's rows back: the spec accepts it`,
    });
  }
  return check("schema.unlogged_tables", "PASS", { measured: "no unlogged table", threshold });
}

/** Tables without a usable replica identity: forward they move like any other; back, a rollback carries their inserts only. */
export function replicaIdentityCheck(inv: SchemaInventory, choices: SchemaChoices): CheckResult {
  const n = count(inv, (d) => keyless(d, choices));
  const full = count(inv, (d) => d.keyless) - n;
  const threshold = "every logged table has a primary key, a replica identity index or REPLICA IDENTITY FULL";
  if (n === 0) {
    return check("schema.replica_identity", "PASS", {
      measured:
        full === 0
          ? "every logged table has a replica identity"
          : `made REPLICA IDENTITY FULL before cutover, per the spec: ${perDatabase(inv, (d) => d.keyless)}`,
      threshold,
    });
  }
  return check("schema.replica_identity", "WARN", {
    measured: `without a replica identity: ${perDatabase(inv, (d) => keyless(d, choices))}`,
    threshold,
    message: `${n} table(s) have no replica identity: the application's statements on them keep working at every phase, but after cutover a rollback carries only the rows inserted into them on the target, not its updates and deletes`,
    remedy:
      "add a primary key, or name them in spec.schema_policy.replica_identity_full_tables (pgshift sets REPLICA IDENTITY FULL before cutover: every update then logs the whole old row)",
  });
}

/** Large objects: physical replication carries them forward; a rollback copies the ones the target changed back to the source. */
export function largeObjectCheck(inv: SchemaInventory): CheckResult {
  const n = inv.databases.reduce((s, d) => s + d.largeObjects, 0);
  const bytes = inv.databases.reduce((s, d) => s + d.largeObjectBytes, 0);
  const measured =
    n === 0
      ? "no large object"
      : inv.databases
          .filter((d) => d.largeObjects > 0)
          .map((d) => `${d.database}: ${d.largeObjects} (${formatBytes(d.largeObjectBytes)})`)
          .join("; ");
  const threshold = "large objects under 256 MiB: a rollback copies the target's changed ones back with writes stopped";
  if (bytes > 256 * 1024 * 1024) {
    return check("schema.large_objects", "WARN", {
      measured,
      threshold,
      message:
        "logical replication does not carry large objects: a rollback compares them on both sides and copies back what the target changed, with writes stopped, so many changed large objects make that stop longer",
      remedy:
        "nothing to do before cutover; keep large-object writes on the target low until finalize, or move the data into bytea columns",
    });
  }
  return check("schema.large_objects", "PASS", {
    measured,
    threshold,
    message:
      n === 0
        ? ""
        : "carried forward by physical replication; a rollback copies back what the target created, changed or removed",
  });
}

/** Publications and subscriptions the source already has; subscriptions would run twice after promotion. */
export function replicationObjectsCheck(inv: SchemaInventory): CheckResult[] {
  const subs = count(inv, (d) => d.subscriptions);
  const pubs = count(inv, (d) => d.publications);
  return [
    subs === 0
      ? check("schema.subscriptions", "PASS", {
          measured: "no subscription",
          threshold: "no subscription on the source",
        })
      : check("schema.subscriptions", "FAIL", {
          measured: `subscriptions: ${perDatabase(inv, (d) => d.subscriptions)}`,
          threshold: "no subscription on the source",
          message: `${subs} subscription(s) on the source would come up on the promoted target too: two subscribers would compete for the publisher's slot, and rows could be applied twice or skipped`,
          remedy:
            "disable them before the migration (ALTER SUBSCRIPTION … DISABLE) and recreate them on the target after cutover, or move them off the source",
        }),
    pubs === 0
      ? check("schema.publications", "PASS", {
          measured: "no publication",
          threshold: "publications listed before cutover",
        })
      : check("schema.publications", "PASS", {
          measured: `publications: ${perDatabase(inv, (d) => d.publications)}`,
          threshold: "publications listed before cutover",
          message: "carried to the target with the catalog; their consumers' slots are coordinated by the CDC steps",
        }),
  ];
}

/** Objects that come over as they are but behave on the target as they did on the source: said, so a DBA can look. */
export function schemaShapeChecks(inv: SchemaInventory): CheckResult[] {
  const out: CheckResult[] = [];
  const part = count(inv, (d) => d.partitioned);
  out.push(
    check("schema.partitioned_tables", "PASS", {
      measured: part === 0 ? "no partitioned table" : `partitioned: ${perDatabase(inv, (d) => d.partitioned)}`,
      threshold: "carried both ways",
      message:
        part === 0
          ? ""
          : "carried forward whole; a rollback carries their partitions' changes (attaching or detaching a partition on the target is a schema change)",
    }),
  );
  const foreign = count(inv, (d) => d.foreign);
  out.push(
    foreign === 0
      ? check("schema.foreign_tables", "PASS", { measured: "no foreign table", threshold: "no foreign table" })
      : check("schema.foreign_tables", "WARN", {
          measured: `foreign: ${perDatabase(inv, (d) => d.foreign)}`,
          threshold: "no foreign table",
          message: `${foreign} foreign table(s): their data lives on another server, which the target must reach with the same user mappings`,
          remedy:
            "check that the target's network reaches each foreign server (and that its extension is available there) before cutover",
        }),
  );
  const triggers = count(inv, (d) => d.eventTriggers);
  out.push(
    triggers === 0
      ? check("schema.event_triggers", "PASS", { measured: "no event trigger", threshold: "no event trigger" })
      : check("schema.event_triggers", "WARN", {
          measured: `event triggers: ${perDatabase(inv, (d) => d.eventTriggers)}`,
          threshold: "no event trigger",
          message: `${triggers} event trigger(s) run on the target after promotion as they do on the source`,
          remedy:
            "check they refer to nothing host-specific; schema changes they make on the target are not carried back by a rollback",
        }),
  );
  return out;
}

/** What a rollback would not carry back, by table, with why: everything else returns to the source losslessly. */
export function rollbackCoverageCheck(inv: SchemaInventory, choices: SchemaChoices): CheckResult {
  const gaps: string[] = [];
  for (const d of inv.databases) {
    for (const t of keyless(d, choices))
      gaps.push(`${d.database}.${t}: updates and deletes (no replica identity; inserts are carried)`);
    for (const t of d.unlogged) gaps.push(`${d.database}.${t}: every row (unlogged)`);
    for (const t of d.materializedViews)
      gaps.push(
        `${d.database}.${t}: its contents as refreshed on the target (REFRESH it on the source after a rollback)`,
      );
  }
  const threshold = "a rollback carries every change made on the target back to the source";
  if (gaps.length === 0) {
    return check("rollback.coverage", "PASS", {
      measured: "every table carried back, large objects copied back",
      threshold,
      message: "a rollback loses none of the target's writes",
    });
  }
  return check("rollback.coverage", "WARN", {
    measured: `not carried back: ${gaps.join("; ")}`,
    threshold,
    message: `a rollback after cutover would not carry ${gaps.length} table(s) fully back to the source; every other table and the large objects are carried back`,
    remedy:
      "give the tables a primary key (or REPLICA IDENTITY FULL) and make unlogged tables logged before cutover, if their changes on the target must survive a rollback",
  });
}

/** Transactions prepared on the source: promotion would carry them to the target half done. */
export function preparedTransactionsCheck(inv: SchemaInventory): CheckResult {
  const threshold = "no prepared transaction";
  if (inv.prepared.length === 0)
    return check("transactions.prepared", "PASS", { measured: "no prepared transaction", threshold });
  return check("transactions.prepared", "WARN", {
    measured: inv.prepared
      .map((p) => `${p.gid} (database ${p.database}, owner ${p.owner}, prepared ${p.preparedAt})`)
      .join("; "),
    threshold,
    message: `${inv.prepared.length} prepared transaction(s) hold locks and old rows on the source; a cutover waits for none to be left`,
    remedy:
      "COMMIT PREPARED or ROLLBACK PREPARED them (their transaction manager should); the cutover refuses to fence while any is left",
  });
}

/** Every verdict of the schema inventory, as preflight and READY_FOR_CUTOVER record them. */
export function schemaChecks(inv: SchemaInventory, choices: SchemaChoices): CheckResult[] {
  return [
    unloggedCheck(inv, choices.disposableUnlogged),
    replicaIdentityCheck(inv, choices),
    largeObjectCheck(inv),
    ...replicationObjectsCheck(inv),
    ...schemaShapeChecks(inv),
    preparedTransactionsCheck(inv),
    rollbackCoverageCheck(inv, choices),
  ];
}
