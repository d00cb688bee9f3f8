import type { Database, DatabaseRef } from "../gen/migration/v1/migration_pb.js";
import type { SpecJson } from "./state.js";
import { InvalidArgumentError } from "./errors.js";
import { checkRef, DATABASE_NAME, instanceKey, ProviderKind, specFromJson } from "./spec.js";

/** A logical database as the inventory holds it: the instances that serve it, its team and labels. */
export interface DatabaseEntry {
  name: string;
  provider: ProviderKind;
  /** As registered (an AWS region left empty stays empty; `keys` resolve it). */
  instances: { id: string; region: string }[];
  /** One key per instance, with the service's default region filled in: what ownership is decided on. */
  keys: string[];
  team: string;
  labels: Record<string, string>;
}

const TEAM = /^[a-z][a-z0-9-]{0,62}$/;
const LABEL_KEY = /^[a-z0-9]([a-z0-9._/-]{0,61}[a-z0-9])?$/;
const MAX_INSTANCES = 16;
const MAX_LABELS = 32;

/** A stored spec's provider and source, for its ownership key. */
export function sourceOf(json: unknown): [ProviderKind, DatabaseRef] {
  const spec = specFromJson(json as SpecJson);
  return [spec.provider, spec.source!];
}

/** The key an instance is owned under: the region an AWS reference leaves empty is the service's default. */
export function ownershipKey(provider: ProviderKind, ref: DatabaseRef, defaultRegion: string | undefined): string {
  const region = provider === ProviderKind.AWS ? ref.region || defaultRegion || "" : "";
  return instanceKey(provider, { ...ref, region });
}

export function checkLabels(field: string, labels: Record<string, string>): Record<string, string> {
  const entries = Object.entries(labels);
  if (entries.length > MAX_LABELS)
    throw new InvalidArgumentError(`${field} holds ${entries.length} labels; at most ${MAX_LABELS}`);
  for (const [k, v] of entries) {
    if (!LABEL_KEY.test(k)) {
      throw new InvalidArgumentError(
        `${field} key "${k.slice(0, 80)}" is not valid: 1 to 63 lowercase letters, digits, ".", "_", "/" or "-", starting and ending with a letter or digit`,
      );
    }
    // Control characters are exactly what is refused here.
    // eslint-disable-next-line no-control-regex
    if (v.length > 63 || /[\u0000-\u001f]/.test(v))
      throw new InvalidArgumentError(`${field}["${k}"] must be at most 63 printable characters`);
  }
  return Object.fromEntries(entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/** Validates a registration; the result is what the inventory stores. */
export function normalizeRegistration(db: Database | undefined, defaultRegion: string | undefined): DatabaseEntry {
  if (!db) throw new InvalidArgumentError("database is required: its name, provider, instances and team");
  if (!DATABASE_NAME.test(db.name)) {
    throw new InvalidArgumentError(
      `database.name "${db.name}" is not valid: use 1 to 63 lowercase letters, digits and dashes, starting with a letter (e.g. "billing-db")`,
    );
  }
  if (db.provider !== ProviderKind.LOCAL && db.provider !== ProviderKind.AWS) {
    throw new InvalidArgumentError("database.provider is required: PROVIDER_LOCAL or PROVIDER_AWS");
  }
  if (db.instances.length === 0 || db.instances.length > MAX_INSTANCES) {
    throw new InvalidArgumentError(
      `database.instances must name 1 to ${MAX_INSTANCES} instances: those a migration of ${db.name} may take as its source`,
    );
  }
  const instances = db.instances.map((r, i) => checkRef(`database.instances[${i}]`, r, db.provider));
  const keys = instances.map((r) => ownershipKey(db.provider, r, defaultRegion));
  const twice = keys.find((k, i) => keys.indexOf(k) !== i);
  if (twice) throw new InvalidArgumentError(`database.instances names ${twice} twice`);
  if (!TEAM.test(db.team)) {
    throw new InvalidArgumentError(
      `database.team "${db.team.slice(0, 80)}" is not valid: the owning team, 1 to 63 lowercase letters, digits and dashes (e.g. "billing")`,
    );
  }
  return {
    name: db.name,
    provider: db.provider,
    instances: instances.map((r) => ({ id: r.id, region: r.region })),
    keys,
    team: db.team,
    labels: checkLabels("database.labels", db.labels),
  };
}
