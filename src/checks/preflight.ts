import type { InstanceDescription, InstanceRef, Provider } from "../providers/provider.js";
import { check, formatBytes, type CheckResult } from "../domain/check.js";
import type { SchemaChoices } from "../domain/spec.js";
import { schemaChecks } from "./schema-checks.js";
import { readSchemaInventory, type SchemaInventory } from "./schema-inventory.js";

/**
 * Checks of the source alone, before anything is created. Each returns a
 * verdict an operator can act on.
 */
export function preflightChecks(
  source: InstanceDescription,
  targetMajor: number,
  targetExtensions: Map<string, string[]>,
): CheckResult[] {
  const results: CheckResult[] = [];
  results.push(
    source.major === targetMajor
      ? check("version.major", "PASS", {
          measured: `source ${source.major}`,
          threshold: `target ${targetMajor}`,
          message: "same major version",
        })
      : check("version.major", "FAIL", {
          measured: `source ${source.major}`,
          threshold: `target ${targetMajor}`,
          message: "physical replication needs the same major version on both sides",
          remedy: `upgrade the source to ${targetMajor} first, or create the target at major ${source.major}`,
        }),
  );
  results.push(
    source.inRecovery
      ? check("source.role", "FAIL", {
          measured: "standby",
          threshold: "primary",
          message: "the source is a standby",
          remedy: "migrate from its primary",
        })
      : check("source.role", "PASS", { measured: "primary", threshold: "primary" }),
  );
  const walLevel = source.settings.wal_level ?? "unknown";
  results.push(
    walLevel === "minimal"
      ? check("settings.wal_level", "FAIL", {
          measured: walLevel,
          threshold: "replica or logical",
          message: "wal_level=minimal cannot feed a replica",
          remedy: "set wal_level=logical and restart the source",
        })
      : check("settings.wal_level", "PASS", { measured: walLevel, threshold: "replica or logical" }),
  );
  results.push(...slotChecks(source, "preflight"));
  results.push(extensionCheck(source, targetExtensions));
  return results;
}

/** Every extension installed on the source must be available on the target, at the same version. */
export function extensionCheck(source: InstanceDescription, available: Map<string, string[]>): CheckResult {
  const missing = source.extensions.filter((e) => !available.has(e.name));
  const otherVersion = source.extensions.filter(
    (e) => available.has(e.name) && !available.get(e.name)!.includes(e.version),
  );
  const list = (xs: typeof missing) =>
    [...new Set(xs.map((e) => `${e.name} ${e.version} (in ${e.database})`))].join(", ");
  if (missing.length > 0) {
    return check("extensions.parity", "FAIL", {
      measured: `not available on the target: ${list(missing)}`,
      threshold: "every installed extension available on the target",
      message: `${missing.length} extension(s) installed on the source cannot run on the target`,
      remedy:
        "install them on the target engine (Aurora: check the supported extensions of the engine version), or drop them from the source",
    });
  }
  if (otherVersion.length > 0) {
    return check("extensions.parity", "WARN", {
      measured: `other versions on the target: ${list(otherVersion)}`,
      threshold: "same versions",
      message: "the target offers these extensions at other versions",
      remedy: "run ALTER EXTENSION ... UPDATE after cutover, and test the application against the new versions",
    });
  }
  return check("extensions.parity", "PASS", {
    measured: `${source.extensions.length} installed extension(s) available on the target`,
    threshold: "all available",
  });
}

/** Settings that change how the application's queries behave, or how much the server can take. */
const SETTINGS_THAT_MATTER = new Set([
  "max_connections",
  "shared_buffers",
  "work_mem",
  "maintenance_work_mem",
  "effective_cache_size",
  "TimeZone",
  "timezone",
  "search_path",
  "default_transaction_isolation",
  "statement_timeout",
  "lock_timeout",
  "idle_in_transaction_session_timeout",
  "standard_conforming_strings",
  "DateStyle",
  "IntervalStyle",
  "client_encoding",
  "lc_collate",
  "lc_ctype",
  "max_prepared_transactions",
  "max_locks_per_transaction",
  "synchronous_commit",
  "default_text_search_config",
  "extra_float_digits",
  "bytea_output",
]);
/** Settings that differ by construction between a primary and its replica, or between two hosts. */
const SETTINGS_IGNORED = new Set([
  "port",
  "data_directory",
  "config_file",
  "hba_file",
  "ident_file",
  "listen_addresses",
  "unix_socket_directories",
  "primary_conninfo",
  "primary_slot_name",
  "transaction_read_only",
  "default_transaction_read_only",
  "in_hot_standby",
  "hot_standby",
  "external_pid_file",
  "log_directory",
  "log_filename",
  "cluster_name",
  "application_name",
  "krb_server_keyfile",
  "ssl_cert_file",
  "ssl_key_file",
  "ssl_ca_file",
]);

/** Settings that differ between source and target, the ones that matter flagged. */
export function parameterCheck(source: Record<string, string>, target: Record<string, string>): CheckResult {
  const differ: string[] = [];
  const missing: string[] = [];
  for (const [name, value] of Object.entries(source)) {
    if (SETTINGS_IGNORED.has(name)) continue;
    if (!(name in target)) missing.push(name);
    else if (target[name] !== value) differ.push(name);
  }
  const important = differ.filter((n) => SETTINGS_THAT_MATTER.has(n));
  const fmt = (n: string) => `${n}: ${source[n]} -> ${target[n] ?? "unsupported"}`;
  if (differ.length === 0 && missing.length === 0) {
    return check("settings.parity", "PASS", { measured: "no setting differs", threshold: "same settings" });
  }
  return check("settings.parity", important.length > 0 || missing.length > 0 ? "WARN" : "PASS", {
    measured: [
      important.length ? `differ and matter: ${important.map(fmt).join("; ")}` : "",
      missing.length ? `not supported on the target: ${missing.join(", ")}` : "",
      differ.length > important.length
        ? `differ: ${differ
            .filter((n) => !important.includes(n))
            .map(fmt)
            .join("; ")}`
        : "",
    ]
      .filter(Boolean)
      .join(" | "),
    threshold: "same settings where they matter",
    message: `${differ.length} setting(s) differ between source and target${important.length ? `, ${important.length} of which change query behaviour or capacity` : ""}`,
    remedy:
      "set them on the target's parameter group (locally: ALTER SYSTEM on the target) before cutover, or accept the difference",
  });
}

/**
 * The incident we must never repeat: an inactive logical slot retains WAL
 * without bound. Each such slot fails the gate, named with its size; dropping
 * it is the operator's call, never ours.
 */
/**
 * An inactive logical slot retaining WAL: the classic trap. Before anything is created it is a WARN (it does not
 * stop the replica being made); at the lag gate a FAIL, for there it holds the cutover until it is read or dropped.
 */
export function slotChecks(source: InstanceDescription, stage: "preflight" | "gate" = "gate"): CheckResult[] {
  const stale = source.slots.filter((s) => s.type === "logical" && !s.active);
  if (stale.length === 0) {
    return [check("slots.inactive_logical", "PASS", { measured: "0 inactive logical slots", threshold: "0" })];
  }
  const total = stale.reduce((n, s) => n + s.retainedBytes, 0n);
  return [
    check("slots.inactive_logical", stage === "gate" ? "FAIL" : "WARN", {
      measured: stale
        .map((s) => `${s.name} (${s.plugin}, database ${s.database}) retains ${formatBytes(s.retainedBytes)}`)
        .join("; "),
      threshold: "no inactive logical slot",
      message:
        stage === "gate"
          ? `${stale.length} inactive logical slot(s) retain ${formatBytes(total)} of WAL and would keep the replica from converging: the cutover waits`
          : `${stale.length} inactive logical slot(s) retain ${formatBytes(total)} of WAL: the replica is made, but the cutover waits at the lag gate until they are read or dropped`,
      remedy: `resume their consumers, or drop them: ${stale.map((s) => `SELECT pg_drop_replication_slot('${s.name}')`).join("; ")}`,
    }),
  ];
}

/**
 * The preflight checks of a source, its schema inventory's included, creating nothing (RunPreflight runs exactly
 * these), as the spec's schema_policy chooses; the engine reads the inventory through its activities.
 */
export async function runPreflight(
  provider: Provider,
  source: InstanceRef,
  target: InstanceRef,
  database: string,
  choices: SchemaChoices,
  readInventory: (p: Provider, ref: InstanceRef) => Promise<SchemaInventory> = readSchemaInventory,
): Promise<CheckResult[]> {
  const desc = await provider.describe(source);
  return [
    ...preflightChecks(desc, await provider.replicaMajor(source), await provider.targetExtensions(source)),
    ...(await provider.platformChecks(source, target, database)),
    ...schemaChecks(await readInventory(provider, source), choices),
  ];
}
