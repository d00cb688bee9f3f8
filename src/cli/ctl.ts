import { parseArgs } from "node:util";
import { create, toJson, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { apiTransport, CLIENT_TLS_OPTIONS } from "./api-transport.js";
import {
  GetMigrationResponseSchema,
  GetRoutingStatusResponseSchema,
  ListMigrationsResponseSchema,
  EventType,
  MigrationService,
  Phase,
  type MigrationEvent,
  WatchMigrationResponseSchema,
  VerifyMigrationResponseSchema,
  CheckStatus,
  ListDatabasesResponseSchema,
  CreateMigrationResponseSchema,
  Provider,
  RegisterDatabaseResponseSchema,
} from "../gen/migration/v1/migration_pb.js";
import { FINAL_PHASES, renderWatch } from "./watch-view.js";
import { CampaignService } from "../gen/migration/v1/campaign_pb.js";
import { campaignCommand, CampaignUsageError } from "./campaign-ctl.js";
import { SpecInputError, specFromInput } from "./spec-input.js";

const ACTIONS = {
  approve: "approveCutover",
  pause: "pauseMigration",
  resume: "resumeMigration",
  abort: "abortMigration",
  rollback: "rollbackMigration",
  finalize: "finalizeMigration",
} as const;

/**
 * Redraws the migration's view on each event and once a second (lag moves between events); ends when the
 * migration reaches a final phase, or on Ctrl-C.
 */
async function liveWatch(client: Client<typeof MigrationService>, id: string): Promise<void> {
  const events: MigrationEvent[] = [];
  let m = (await client.getMigration({ id })).migration!;
  const draw = () =>
    process.stdout.write(
      `\x1b[H\x1b[2J${renderWatch(m, events, { now: new Date(), color: true, verdicts: Math.max(5, (process.stdout.rows ?? 40) - 30) })}`,
    );
  const abort = new AbortController();
  const refresh = setInterval(() => {
    client.getMigration({ id }, { signal: abort.signal }).then(
      (r) => {
        m = r.migration!;
        draw();
      },
      () => {},
    );
  }, 1000);
  try {
    draw();
    for await (const res of client.watchMigration({ id }, { signal: abort.signal })) {
      if (res.event) events.push(res.event);
      if (res.event?.type === EventType.PHASE_CHANGED || res.event?.type === EventType.CHECK_RESULT)
        m = (await client.getMigration({ id })).migration!;
      draw();
      if (FINAL_PHASES.includes(res.phase)) break;
    }
  } finally {
    clearInterval(refresh);
    abort.abort();
  }
}

/** A usage mistake: says what to type instead. */
class UsageError extends Error {}

/** --label KEY=VALUE flags as a map. */
function labels(flags: string[] | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const f of flags ?? []) {
    const eq = f.indexOf("=");
    if (eq <= 0) throw new UsageError(`--label ${f} is not KEY=VALUE, e.g. --label tier=gold`);
    out[f.slice(0, eq)] = f.slice(eq + 1);
  }
  return out;
}

function print<D extends DescMessage>(schema: D, msg: MessageShape<D>): void {
  process.stdout.write(JSON.stringify(toJson(schema, msg)) + "\n");
}

/** The flags its parser takes: `pgshift help` describes each, and a test holds the two to each other. */
export const CTL_OPTIONS = {
  api: { type: "string" },
  ...CLIENT_TLS_OPTIONS,
  actor: { type: "string" },
  reason: { type: "string" },
  database: { type: "string" },
  phase: { type: "string", multiple: true },
  json: { type: "boolean", default: false },
  instance: { type: "string", multiple: true },
  team: { type: "string" },
  label: { type: "string", multiple: true },
  provider: { type: "string" },
  region: { type: "string" },
  spec: { type: "string" },
  source: { type: "string" },
  target: { type: "string" },
  cutover: { type: "string" },
  "request-id": { type: "string" },
  wave: { type: "string" },
} as const;

export async function ctlCommand(argv: string[]): Promise<void> {
  // Planning needs no service: it is a function of the flags.
  if (argv[0] === "plan") return (await import("./aws-plan.js")).awsPlanCommand(argv.slice(1));
  const { values, positionals } = parseArgs({
    args: argv,
    options: CTL_OPTIONS,
    allowPositionals: true,
    strict: true,
  });
  const [verb, arg] = positionals;
  if (verb === "campaign") {
    const campaigns = createClient(CampaignService, apiTransport(values));
    const headers = values.actor ? { "x-pgshift-actor": values.actor } : undefined;
    return failures(() => campaignCommand(campaigns, positionals[1], positionals[2], values, headers));
  }
  const client = createClient(MigrationService, apiTransport(values));
  const headers = values.actor ? { "x-pgshift-actor": values.actor } : undefined;
  const need = (what: string) => {
    if (!arg) throw new UsageError(`pgshift ctl ${verb} needs ${what}`);
    return arg;
  };
  return failures(async () => {
    switch (verb) {
      case "list": {
        const phases = (values.phase ?? []).map((p) => {
          const v = Phase[p.toUpperCase().replace(/^PHASE_/, "") as keyof typeof Phase];
          if (v === undefined)
            throw new UsageError(
              `--phase ${p} is not a phase; use one of ${Object.keys(Phase)
                .filter((k) => Number.isNaN(Number(k)) && k !== "UNSPECIFIED")
                .join(", ")}`,
            );
          return v;
        });
        let pageToken = "";
        do {
          const res = await client.listMigrations({
            databaseName: values.database ?? "",
            phases,
            pageToken,
            pageSize: 100,
          });
          print(ListMigrationsResponseSchema, res);
          pageToken = res.nextPageToken;
        } while (pageToken);
        return;
      }
      case "create": {
        let spec;
        try {
          spec = specFromInput(values);
        } catch (e) {
          if (e instanceof SpecInputError) throw new UsageError(e.message);
          throw e;
        }
        const res = await client.createMigration({ spec, requestId: values["request-id"] ?? "" }, { headers });
        return print(CreateMigrationResponseSchema, res);
      }
      case "register": {
        const provider = { local: Provider.LOCAL, aws: Provider.AWS }[values.provider ?? "local"];
        if (provider === undefined)
          throw new UsageError(`--provider ${values.provider} is not a provider; use local or aws`);
        if (!values.instance?.length)
          throw new UsageError(
            "pgshift ctl register needs --instance ID (repeatable): the instances that serve the database",
          );
        const database = {
          name: need("a database name"),
          provider,
          instances: values.instance.map((id) => ({ id, region: values.region ?? "" })),
          team: values.team ?? "",
          labels: labels(values.label),
        };
        return print(RegisterDatabaseResponseSchema, await client.registerDatabase({ database }, { headers }));
      }
      case "databases": {
        let pageToken = "";
        do {
          const res = await client.listDatabases({
            team: values.team ?? "",
            labels: labels(values.label),
            pageToken,
            pageSize: 100,
          });
          print(ListDatabasesResponseSchema, res);
          pageToken = res.nextPageToken;
        } while (pageToken);
        return;
      }
      case "get":
        return print(GetMigrationResponseSchema, await client.getMigration({ id: need("a migration id") }));
      case "routing":
        return print(
          GetRoutingStatusResponseSchema,
          await client.getRoutingStatus({ databaseName: need("a database name") }),
        );
      case "verify": {
        const res = await client.verifyMigration({ id: need("a migration id") }, { headers });
        print(VerifyMigrationResponseSchema, res);
        // A script can tell a difference from a match without reading the JSON.
        if (res.check?.status === CheckStatus.FAIL) process.exitCode = 1;
        return;
      }
      case "watch": {
        const id = need("a migration id");
        // A person at a terminal gets the live view; a pipe, a file or --json gets the events as JSON lines.
        if (!values.json && process.stdout.isTTY) return await liveWatch(client, id);
        for await (const res of client.watchMigration({ id })) print(WatchMigrationResponseSchema, res);
        return;
      }
      default: {
        const method = ACTIONS[verb as keyof typeof ACTIONS];
        if (!method)
          throw new UsageError(
            `unknown ctl command "${verb ?? ""}"; one of create, list, get, watch, routing, verify, register, databases, campaign, ${Object.keys(ACTIONS).join(", ")}`,
          );
        const res = await client[method]({ id: need("a migration id"), reason: values.reason ?? "" }, { headers });
        return print(GetMigrationResponseSchema, create(GetMigrationResponseSchema, { migration: res.migration }));
      }
    }
  });
}

/** Runs a ctl command: a usage mistake exits 64 with what to type; a refusal prints the gRPC code and the service's words. */
async function failures(run: () => Promise<void>): Promise<void> {
  try {
    await run();
  } catch (e) {
    if (e instanceof UsageError || e instanceof CampaignUsageError) {
      process.stderr.write(`${e.message}\n`);
      process.exitCode = 64;
      return;
    }
    const ce = ConnectError.from(e);
    // The gRPC code and the service's own words: what to fix.
    process.stderr.write(`${Code[ce.code]}: ${ce.rawMessage}\n`);
    process.exitCode = ce.code === Code.Unavailable ? 69 : 1;
  }
}
