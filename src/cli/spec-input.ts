import { readFileSync } from "node:fs";
import { fromJson, type JsonObject } from "@bufbuild/protobuf";
import { parse as parseYaml } from "yaml";
import { MigrationSpecSchema, type MigrationSpec } from "../gen/migration/v1/migration_pb.js";

/** The flags `ctl create` takes to make or amend a spec. */
export interface SpecFlags {
  spec?: string;
  database?: string;
  provider?: string;
  source?: string;
  target?: string;
  region?: string;
  cutover?: string;
}

/** A mistake in what was given: said with the file or flag to fix. */
export class SpecInputError extends Error {}

const CUTOVER = { manual: "CUTOVER_MODE_MANUAL", automatic: "CUTOVER_MODE_AUTOMATIC" } as const;
const PROVIDER = { local: "PROVIDER_LOCAL", aws: "PROVIDER_AWS" } as const;

/** A YAML or JSON file's mapping (JSON is YAML too); `holds` says what it must hold, for the error. */
export function documentFromFile(path: string, holds: string): JsonObject {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    throw new SpecInputError(`--spec ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  let parsed: unknown;
  try {
    parsed = parseYaml(text);
  } catch (e) {
    throw new SpecInputError(`--spec ${path} is neither YAML nor JSON: ${(e as Error).message.split("\n")[0]}`);
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed))
    throw new SpecInputError(`--spec ${path} must hold ${holds}`);
  return parsed as JsonObject;
}

/**
 * A MigrationSpec from a file (YAML or JSON: the API's own message, in its JSON form, field names as in the .proto
 * or in lowerCamelCase) and flags, which win over the file. Unknown fields and enum names are refused here, naming
 * them, as the service would refuse them.
 */
export function specFromInput(f: SpecFlags): MigrationSpec {
  const doc: JsonObject = f.spec
    ? documentFromFile(f.spec, "a MigrationSpec: a mapping with database_name, provider, source, target…")
    : {};
  const pick = <K extends string>(flag: string, value: string | undefined, names: Record<K, string>) => {
    if (value === undefined) return undefined;
    const v = names[value.toLowerCase() as K];
    if (!v) throw new SpecInputError(`--${flag} ${value} is not one of ${Object.keys(names).join(", ")}`);
    return v;
  };
  const ref = (key: "source" | "target", id: string | undefined) =>
    id === undefined
      ? undefined
      : { ...((doc[key] as JsonObject | undefined) ?? {}), id, ...(f.region ? { region: f.region } : {}) };
  const merged: JsonObject = {
    ...doc,
    ...(f.database !== undefined ? { database_name: f.database } : {}),
    ...(f.provider !== undefined ? { provider: pick("provider", f.provider, PROVIDER)! } : {}),
    ...(f.source !== undefined ? { source: ref("source", f.source)! } : {}),
    ...(f.target !== undefined ? { target: ref("target", f.target)! } : {}),
    ...(f.cutover !== undefined ? { cutover_mode: pick("cutover", f.cutover, CUTOVER)! } : {}),
  };
  if (merged.provider === undefined) merged.provider = PROVIDER.local;
  try {
    return fromJson(MigrationSpecSchema, merged, { ignoreUnknownFields: false });
  } catch (e) {
    throw new SpecInputError(`${f.spec ? `--spec ${f.spec}` : "the flags"}: ${(e as Error).message}`);
  }
}
