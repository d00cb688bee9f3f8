import { clone, create, fromJson, toJson, type JsonValue } from "@bufbuild/protobuf";
import { CampaignSpecSchema, type CampaignSpec } from "../gen/migration/v1/campaign_pb.js";
import {
  CutoverMode,
  DatabaseRefSchema,
  MigrationSpecSchema,
  type DatabaseRef,
  type MigrationSpec,
} from "../gen/migration/v1/migration_pb.js";
import { parseWindow, type CampaignRules } from "./campaign.js";
import { InvalidArgumentError } from "./errors.js";
import { checkLabels } from "./inventory.js";
import { DATABASE_NAME, normalizeSpec, type ProviderKind } from "./spec.js";

export const CAMPAIGN_DEFAULTS = {
  waveSizes: [1, 5],
  maxReplicating: 10,
  maxCutovers: 1,
  maxFailures: 1,
  minFinishedForRate: 5,
};

const LIMITS = { waves: 64, waveSize: 500, names: 1000, replicating: 500, windows: 32, teams: 200 };

/** A registered database a campaign selected, as the inventory holds it. */
export interface SelectedDatabase {
  name: string;
  team: string;
  provider: ProviderKind;
  instances: { id: string; region: string }[];
}

/** Checks a campaign spec and fills its defaults; every error names the field to fix. */
export function normalizeCampaignSpec(spec: CampaignSpec | undefined): CampaignSpec {
  if (!spec) throw new InvalidArgumentError("spec is required: the campaign's name, selection, targets and template");
  if (!DATABASE_NAME.test(spec.name))
    throw new InvalidArgumentError(
      `spec.name "${spec.name.slice(0, 80)}" is not valid: 1 to 63 lowercase letters, digits and dashes, starting with a letter`,
    );
  const select = spec.select;
  if (!select || (select.names.length === 0 && Object.keys(select.labels).length === 0))
    throw new InvalidArgumentError("spec.select is required: database names, labels (e.g. team=billing), or both");
  if (select.names.length > LIMITS.names)
    throw new InvalidArgumentError(`spec.select.names holds ${select.names.length} names; at most ${LIMITS.names}`);
  for (const n of select.names)
    if (!DATABASE_NAME.test(n))
      throw new InvalidArgumentError(`spec.select.names holds "${n.slice(0, 80)}", which is not a database name`);
  checkLabels("spec.select.labels", select.labels);
  const t = spec.targets;
  if (!t || (!t.idTemplate && Object.keys(t.targets).length === 0))
    throw new InvalidArgumentError(
      'spec.targets is required: an id_template such as "{source}-aurora", explicit targets by database, or both',
    );
  if (t.idTemplate && !t.idTemplate.includes("{source}") && !t.idTemplate.includes("{database}"))
    throw new InvalidArgumentError(
      `spec.targets.id_template "${t.idTemplate.slice(0, 80)}" names one target for every database: include {source} or {database}`,
    );
  const tpl = spec.template ?? create(MigrationSpecSchema, {});
  const filled = [
    tpl.databaseName && "database_name",
    tpl.source && "source",
    tpl.target && "target",
    tpl.provider && "provider",
    tpl.cutoverMode && "cutover_mode",
  ].filter(Boolean);
  if (filled.length)
    throw new InvalidArgumentError(
      `spec.template sets ${filled.join(", ")}: the campaign fills those for each database; leave them empty`,
    );
  const waveSizes = spec.waveSizes.length ? spec.waveSizes : CAMPAIGN_DEFAULTS.waveSizes;
  if (waveSizes.length > LIMITS.waves || waveSizes.some((s) => s < 1 || s > LIMITS.waveSize))
    throw new InvalidArgumentError(
      `spec.wave_sizes must hold 1 to ${LIMITS.waves} sizes, each 1 to ${LIMITS.waveSize}; got [${waveSizes.slice(0, 8).join(", ")}]`,
    );
  const maxReplicating = spec.maxReplicating || CAMPAIGN_DEFAULTS.maxReplicating;
  const maxCutovers = spec.maxCutovers || CAMPAIGN_DEFAULTS.maxCutovers;
  if (maxReplicating > LIMITS.replicating)
    throw new InvalidArgumentError(`spec.max_replicating must be at most ${LIMITS.replicating}; got ${maxReplicating}`);
  if (maxCutovers > maxReplicating)
    throw new InvalidArgumentError(
      `spec.max_cutovers (${maxCutovers}) must be at most spec.max_replicating (${maxReplicating})`,
    );
  if (spec.windows.length > LIMITS.windows || spec.teamWindows.length > LIMITS.teams)
    throw new InvalidArgumentError(
      `spec.windows holds at most ${LIMITS.windows} windows and spec.team_windows at most ${LIMITS.teams} teams`,
    );
  spec.windows.forEach((w, i) => parseWindow(`spec.windows[${i}]`, w));
  spec.teamWindows.forEach((tw, i) => {
    if (!tw.team) throw new InvalidArgumentError(`spec.team_windows[${i}].team is required`);
    tw.windows.forEach((w, k) => parseWindow(`spec.team_windows[${i}].windows[${k}]`, w));
  });
  const stop = spec.stop;
  if (stop && (stop.maxFailureRate < 0 || stop.maxFailureRate > 1))
    throw new InvalidArgumentError(`spec.stop.max_failure_rate must be between 0 and 1; got ${stop.maxFailureRate}`);
  const out = clone(CampaignSpecSchema, spec);
  out.waveSizes = [...waveSizes];
  out.maxReplicating = maxReplicating;
  out.maxCutovers = maxCutovers;
  out.template = tpl;
  return out;
}

/** The rules the planner applies, from a normalized spec. */
export function campaignRules(spec: CampaignSpec): CampaignRules {
  return {
    waveSizes: spec.waveSizes,
    approveEveryWave: spec.approveEveryWave,
    maxReplicating: spec.maxReplicating,
    maxCutovers: spec.maxCutovers,
    windows: spec.windows.map((w, i) => parseWindow(`spec.windows[${i}]`, w)),
    teamWindows: Object.fromEntries(
      spec.teamWindows.map((tw, i) => [
        tw.team,
        tw.windows.map((w, k) => parseWindow(`spec.team_windows[${i}].windows[${k}]`, w)),
      ]),
    ),
    maxFailures: spec.stop?.maxFailures || CAMPAIGN_DEFAULTS.maxFailures,
    continueAfterRollback: spec.stop?.continueAfterRollback ?? false,
    maxFailureRate: spec.stop?.maxFailureRate ?? 0,
    minFinishedForRate: spec.stop?.minFinishedForRate || CAMPAIGN_DEFAULTS.minFinishedForRate,
    twoPersonApproval: spec.twoPersonApproval,
  };
}

/** The target of one selected database: an explicit one, or the template with its source and name filled in. */
export function targetFor(spec: CampaignSpec, db: SelectedDatabase): DatabaseRef {
  const explicit = spec.targets?.targets[db.name];
  if (explicit) return clone(DatabaseRefSchema, explicit);
  const source = db.instances[0]!;
  const id = spec.targets!.idTemplate.replaceAll("{source}", source.id).replaceAll("{database}", db.name);
  return create(DatabaseRefSchema, { id, region: source.region });
}

/** The migration a campaign makes for one of its databases: the template, with what the campaign fills. */
export function migrationSpecFor(spec: CampaignSpec, db: SelectedDatabase, target: DatabaseRef): MigrationSpec {
  const out = clone(MigrationSpecSchema, spec.template ?? create(MigrationSpecSchema, {}));
  out.databaseName = db.name;
  out.provider = db.provider;
  out.source = create(DatabaseRefSchema, db.instances[0]!);
  out.target = target;
  // The campaign approves each cutover itself, inside its windows and limits.
  out.cutoverMode = CutoverMode.MANUAL;
  try {
    return normalizeSpec(out);
  } catch (e) {
    throw new InvalidArgumentError(`for database "${db.name}": ${(e as Error).message}`);
  }
}

export const campaignSpecToJson = (s: CampaignSpec) => toJson(CampaignSpecSchema, s) as JsonValue;
export const campaignSpecFromJson = (j: unknown) => fromJson(CampaignSpecSchema, j as JsonValue);
