import { spawn } from "node:child_process";
import { ctl } from "./helpers/ctl.js";
import { writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { migrationClient, unary, type AnyClient } from "./helpers/grpc-clients.js";
import { localSpec } from "./helpers/migrations.js";
import { startServiceProcess, tempDir, type ServiceProcess } from "./helpers/service-process.js";

const ROOT = resolve(import.meta.dirname, "..");

describe("pgshift ctl: operators act on migrations from the command line", () => {
  const tmp = tempDir("ctl");
  let svc: ServiceProcess;
  let client: AnyClient;
  let api: string;

  beforeAll(async () => {
    // API only: the migrations stay where the test puts them.
    svc = await startServiceProcess(["--data-dir", tmp.dir, "--engine", "off"]);
    client = migrationClient(svc.address);
    api = `http://${svc.address}`;
  });

  afterAll(async () => {
    client?.close();
    if (svc) await svc.stop();
    tmp.remove();
  });

  it("ctl create starts a migration from a YAML spec or from flags (flags win), and refuses a misspelled field by name", async () => {
    const file = join(tmp.dir, "spec.yaml");
    writeFileSync(
      file,
      [
        "database_name: yaml-db",
        "provider: PROVIDER_LOCAL",
        "source: { id: yaml-src }",
        "target: { id: yaml-tgt }",
        "cutover_mode: CUTOVER_MODE_AUTOMATIC",
        "lag_policy: { max_lag_time: 3s, window: 30s }",
        "",
      ].join("\n"),
    );
    const fromFile = await ctl(api, ["create", "--spec", file, "--request-id", "cli-create-1"]);
    expect(fromFile.code, fromFile.err).toBe(0);
    const made = JSON.parse(fromFile.out);
    expect(made).toMatchObject({
      created: true,
      migration: {
        spec: { databaseName: "yaml-db", cutoverMode: "CUTOVER_MODE_AUTOMATIC", lagPolicy: { window: "30s" } },
      },
    });
    // Retried with the same request id: the same migration.
    const again = JSON.parse((await ctl(api, ["create", "--spec", file, "--request-id", "cli-create-1"])).out);
    expect(again.migration.id).toBe(made.migration.id);
    expect(again.created).toBeUndefined();
    // Flags alone, and over a file.
    const flags = await ctl(api, [
      "create",
      "--database",
      "flag-db",
      "--source",
      "flag-src",
      "--target",
      "flag-tgt",
      "--cutover",
      "manual",
    ]);
    expect(flags.code, flags.err).toBe(0);
    expect(JSON.parse(flags.out).migration.spec).toMatchObject({
      databaseName: "flag-db",
      source: { id: "flag-src" },
      cutoverMode: "CUTOVER_MODE_MANUAL",
    });
    const over = await ctl(api, [
      "create",
      "--spec",
      file,
      "--database",
      "over-db",
      "--source",
      "over-src",
      "--target",
      "over-tgt",
    ]);
    expect(JSON.parse(over.out).migration.spec).toMatchObject({
      databaseName: "over-db",
      cutoverMode: "CUTOVER_MODE_AUTOMATIC",
    });
    // A misspelling is refused before anything is sent, naming it; so is a flag value that is not one of its words.
    writeFileSync(file, "database_name: typo-db\ncutover_mode: CUTOVER_MODE_AUTOMATC\n");
    const typo = await ctl(api, ["create", "--spec", file]);
    expect(typo.code).toBe(64);
    expect(typo.err).toMatch(/--spec .*spec\.yaml: .*CUTOVER_MODE_AUTOMATC/);
    const word = await ctl(api, [
      "create",
      "--database",
      "w-db",
      "--source",
      "w-src",
      "--target",
      "w-tgt",
      "--cutover",
      "soon",
    ]);
    expect(word.code).toBe(64);
    expect(word.err).toContain("--cutover soon is not one of manual, automatic");
    // What the service refuses comes back with its code and words.
    const bad = await ctl(api, ["create", "--database", "Bad_Name", "--source", "b-src", "--target", "b-tgt"]);
    expect(bad.code).toBe(1);
    expect(bad.err).toMatch(/^InvalidArgument: spec\.database_name "Bad_Name" is not valid/);
  });

  it("lists, gets, pauses and resumes with who asked on record; bad input exits non-zero with the service's code and words", async () => {
    const m = (await unary(client, "CreateMigration", { spec: localSpec("ctl-db", "ctl-src", "ctl-tgt") })).migration;
    const list = await ctl(api, ["list", "--database", "ctl-db", "--phase", "pending"]);
    expect(list.code).toBe(0);
    expect(JSON.parse(list.out).migrations.map((x: { id: string }) => x.id)).toEqual([m.id]);

    const paused = await ctl(api, ["pause", m.id, "--actor", "alice", "--reason", "change freeze"]);
    expect(paused.code).toBe(0);
    expect(JSON.parse(paused.out).migration.paused).toBe(true);
    const got = JSON.parse((await ctl(api, ["get", m.id])).out).migration;
    expect(got.paused).toBe(true);
    const events = await new Promise<any[]>((res) => {
      const seen: any[] = [];
      const s = client.WatchMigration({ id: m.id, after_sequence: 0 });
      s.on("data", (d: any) => {
        seen.push(d.event);
        if (d.event.type === "EVENT_TYPE_OPERATOR_ACTION") {
          s.cancel();
          res(seen);
        }
      });
      s.on("error", () => res(seen));
    });
    expect(events.find((e) => e.type === "EVENT_TYPE_OPERATOR_ACTION")).toMatchObject({
      actor: "alice",
      message: "pause: change freeze",
    });
    expect(JSON.parse((await ctl(api, ["resume", m.id])).out).migration.paused ?? false).toBe(false);

    const missing = await ctl(api, ["get", "no-such-id"]);
    expect(missing.code).toBe(1);
    expect(missing.err).toMatch(/^NotFound: no migration with id "no-such-id"/);
    const notYet = await ctl(api, ["finalize", m.id]);
    expect(notYet.err).toMatch(/^FailedPrecondition: cannot finalize a migration in PENDING/);
    const usage = await ctl(api, ["frobnicate"]);
    expect(usage.code).toBe(64);
    expect(usage.err).toMatch(/unknown ctl command "frobnicate"/);
    const phase = await ctl(api, ["list", "--phase", "soon"]);
    expect(phase.err).toMatch(/--phase soon is not a phase; use one of PENDING, PREFLIGHT/);
  });

  it("ctl watch: a live view on a terminal (run under script(1) for a pseudo-terminal), JSON lines through a pipe", async () => {
    const m = (await unary(client, "CreateMigration", { spec: localSpec("watch-db", "watch-src", "watch-tgt") }))
      .migration;
    const bundle = join(ROOT, "dist/pgshift.mjs");
    // script(1) gives the command a terminal and copies what it draws to our pipe.
    const screen = await new Promise<string>((res) => {
      const child = spawn(
        "script",
        ["-qec", `${process.execPath} ${bundle} ctl watch ${m.id} --api ${api}`, "/dev/null"],
        { stdio: ["pipe", "pipe", "pipe"] },
      );
      let out = "";
      child.stdout.on("data", (d: Buffer) => {
        out += d.toString();
        // Two draws: the first, and the one-second refresh.
        if ((out.match(/timeline/g) ?? []).length >= 2) child.kill("SIGTERM");
      });
      child.on("exit", () => res(out));
      setTimeout(() => child.kill("SIGKILL"), 15_000);
    });
    expect(screen).toContain("\x1b[H\x1b[2J");
    expect(screen).toContain(`pgshift ctl watch ${m.id}`);
    expect(screen).toContain("watch-db: watch-src -> watch-tgt");
    expect(screen).toMatch(/phase PENDING for [\d.]+ (ms|s)/);
    expect(screen).toMatch(/PENDING\s+\d\d:\d\d:\d\d\.\d{3}\s+[\d.]+ (ms|s)\s+<- now/);
    // Through a pipe: the events as JSON, one per line.
    const piped = await new Promise<string>((res) => {
      const child = spawn(process.execPath, [bundle, "ctl", "watch", m.id, "--api", api], {
        stdio: ["ignore", "pipe", "pipe"],
      });
      let out = "";
      child.stdout.on("data", (d: Buffer) => {
        out += d.toString();
        if (out.includes("\n")) child.kill("SIGTERM");
      });
      child.on("exit", () => res(out));
    });
    expect(JSON.parse(piped.split("\n")[0]!).event.type).toBe("EVENT_TYPE_CREATED");
  });
});
