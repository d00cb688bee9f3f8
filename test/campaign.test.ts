import { maxOverlap } from "../testing/overlap.js";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LocalProvider } from "../src/providers/local/local-provider.js";
import { createSampleSource } from "../testing/sample.js";
import { destroyClusters } from "./helpers/clusters.js";
import { campaignClient, grpc, migrationClient, unary, unaryError, type AnyClient } from "./helpers/grpc-clients.js";
import { ctl } from "./helpers/ctl.js";
import { WebhookReceiver } from "./helpers/webhook-receiver.js";
import { eventsSoFar } from "./helpers/migrations.js";
import { ReplicaPair } from "./helpers/replicas.js";
import { tempDir } from "./helpers/service-process.js";

const DBS = ["fleet-a", "fleet-b", "fleet-c", "fleet-d", "fleet-e", "fleet-f"];
const WINDOW_OPENS_AFTER_MS = 25_000;
const hhmmss = (d: Date) => d.toISOString().slice(11, 19);
const DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

/**
 * A campaign of six registered local databases in three waves (a canary, then three, then two), at most two
 * migrations in flight and one cutover at a time, with a change window that opens during the test, run by two
 * replicas sharing one store; one replica is killed mid-campaign, and one database's source dies so its migration
 * fails.
 */
describe("a fleet campaign: waves, limits, a change window, a stop condition, a replica killed", () => {
  const tmp = tempDir("campaign");
  const localDir = join(tmp.dir, "local");
  const provider = new LocalProvider(localDir);
  const hooksFile = join(tmp.dir, "hooks.yaml");
  const pair = new ReplicaPair(tmp.dir, () => ["--local-dir", localDir, "--lease-ms", "4000", "--notify", hooksFile]);
  const receiver = new WebhookReceiver({ billing: "billing-secret-0123456789", search: "search-secret-0123456789" });
  const clients: { campaigns: AnyClient; migrations: AnyClient }[] = [];

  async function startReplica(i: number): Promise<void> {
    const r = await pair.start(i);
    clients[i] = { campaigns: campaignClient(r.address), migrations: migrationClient(r.address) };
  }

  beforeAll(async () => {
    const url = await receiver.listen();
    writeFileSync(join(tmp.dir, "billing.secret"), "billing-secret-0123456789\n");
    writeFileSync(join(tmp.dir, "search.secret"), "search-secret-0123456789\n");
    writeFileSync(
      hooksFile,
      `teams:\n  billing:\n    - { url: "${url}/billing", format: json, secret_file: billing.secret }\n  search:\n    - { url: "${url}/search", format: slack, secret_file: search.secret }\n`,
    );
    await Promise.all(DBS.map((d) => createSampleSource(provider, `${d}-src`, { rows: 20 })));
    await startReplica(0);
    await startReplica(1);
    for (const [i, d] of DBS.entries()) {
      await unary(clients[0]!.migrations, "RegisterDatabase", {
        database: {
          name: d,
          provider: "PROVIDER_LOCAL",
          instances: [{ id: `${d}-src` }],
          team: i < 3 ? "billing" : "search",
          labels: { tier: "2" },
        },
      });
    }
  }, 180_000);

  afterAll(async () => {
    await receiver.close();
    for (const c of clients) {
      c?.campaigns.close();
      c?.migrations.close();
    }
    await pair.close();
    await destroyClusters(provider);
    tmp.remove();
  });

  /** The replica the test talks to: the one left alive once the other is killed. */
  let via = 0;
  const get = async (id: string) => (await unary(clients[via]!.campaigns, "GetCampaign", { id })).campaign;
  async function until(id: string, what: string, ok: (c: any) => boolean, timeoutMs = 120_000): Promise<any> {
    const end = Date.now() + timeoutMs;
    let c = await get(id);
    while (!ok(c)) {
      if (Date.now() > end)
        throw new Error(
          `campaign did not reach "${what}" in ${timeoutMs} ms: ${JSON.stringify({ state: c.state, reason: c.pause_reason, items: c.items.map((i: any) => [i.database_name, i.phase, i.waiting_for]) })}`,
        );
      await new Promise((r) => setTimeout(r, 250));
      c = await get(id);
    }
    return c;
  }

  it("refuses a bad campaign with a message naming what to fix", async () => {
    const bad = await unaryError(clients[0]!.campaigns, "CreateCampaign", {
      spec: {
        name: "fleet",
        select: { labels: { tier: "2" } },
        targets: { id_template: "{source}-aurora" },
        max_replicating: 2,
        max_cutovers: 3,
      },
    });
    expect(bad.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(bad.details).toMatch(/max_cutovers \(3\) must be at most spec.max_replicating \(2\)/);
    const none = await unaryError(clients[0]!.campaigns, "CreateCampaign", {
      spec: { name: "fleet", select: { names: ["nobody-db"] }, targets: { id_template: "{source}-aurora" } },
    });
    expect(none.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(none.details).toMatch(/"nobody-db", which is not registered/);
  });

  it("migrates six databases in three waves inside the limits and the window, pauses on a failure, survives a replica's death", async () => {
    const opens = new Date(Date.now() + WINDOW_OPENS_AFTER_MS);
    const closes = new Date(opens.getTime() + 3600_000);
    const created = await unary(clients[0]!.campaigns, "CreateCampaign", {
      request_id: "fleet-campaign-1",
      spec: {
        name: "fleet",
        select: { labels: { tier: "2" } },
        targets: { id_template: "{source}-aurora" },
        template: {
          lag_policy: { max_lag_bytes: String(64 * 1024 * 1024), max_lag_time: { seconds: 5 }, window: { seconds: 1 } },
          step_policy: { max_attempts: 2, initial_backoff: { nanos: 200_000_000 }, max_backoff: { seconds: 1 } },
        },
        wave_sizes: [1, 3],
        max_replicating: 2,
        max_cutovers: 1,
        // The window opens during the test (and runs past midnight UTC if need be).
        windows: [{ days: [DAYS[opens.getUTCDay()]], start: hhmmss(opens), end: hhmmss(closes), time_zone: "UTC" }],
      },
    });
    expect(created.created).toBe(true);
    const id = created.campaign.id;
    // A watcher from the start sees every state it passes through, with the counts, and the stream ends with it.
    const watched: any[] = [];
    let watchError: any;
    const watch = new Promise<void>((resolve) => {
      const stream = clients[1]!.campaigns.WatchCampaign({ id });
      stream.on("data", (d: any) => watched.push(d.campaign));
      stream.on("end", () => resolve());
      // Its replica may be the one killed: then the stream breaks, and only then may it.
      stream.on("error", (e: any) => {
        watchError = e;
        resolve();
      });
    });
    expect(created.campaign.items.map((i: any) => [i.database_name, i.wave])).toEqual([
      ["fleet-a", 0],
      ["fleet-b", 1],
      ["fleet-c", 1],
      ["fleet-d", 1],
      ["fleet-e", 2],
      ["fleet-f", 2],
    ]);
    expect(created.campaign.items[0].target.id).toBe("fleet-a-src-aurora");
    // A retry with the same request id is the same campaign.
    const again = await unary(clients[1]!.campaigns, "CreateCampaign", {
      request_id: "fleet-campaign-1",
      spec: created.campaign.spec,
    });
    expect([again.created, again.campaign.id]).toEqual([false, id]);

    // The canary reaches READY_FOR_CUTOVER and waits there for the window.
    const waiting = await until(
      id,
      "canary ready, waiting for the window",
      (c) => c.items[0].phase === "PHASE_READY_FOR_CUTOVER",
    );
    expect(waiting.items[0].waiting_for).toBe("the campaign's change windows");
    expect(waiting.items[1].waiting_for).toBe("wave 0 to finish");
    expect(Date.now()).toBeLessThan(opens.getTime());

    // Wave 1 starts once the canary completed; the replica holding the campaign dies (SIGKILL) while it runs.
    await until(id, "wave 1 started", (c) => c.items.slice(1, 4).some((i: any) => i.migration_id), 180_000);
    const victim = await pair.holderOf(`pgshift:campaign:${id}`);
    await pair.replicas[victim]!.kill();
    via = 1 - victim;
    // Now the source of a wave-2 database dies before its migration starts: that migration fails.
    await provider.cluster({ id: "fleet-e-src" }).stop("immediate");
    const paused = await until(id, "paused by the failure", (c) => c.state === "CAMPAIGN_STATE_PAUSED", 300_000);
    expect(paused.pause_reason).toMatch(/1 migration\(s\) failed \(stop condition: pause after 1\)/);
    const e = paused.items.find((i: any) => i.database_name === "fleet-e");
    expect(["PHASE_FAILED", "PHASE_ABORTED"]).toContain(e.phase);

    // Resume: the failure seen no longer counts; the last database goes on and the campaign completes.
    const resumed = await unary(clients[via]!.campaigns, "ResumeCampaign", {
      id,
      reason: "fleet-e's source is gone; carry on",
    });
    expect(resumed.campaign.state).toBe("CAMPAIGN_STATE_RUNNING");
    const done = await until(id, "completed", (c) => c.state === "CAMPAIGN_STATE_COMPLETED", 300_000);
    expect(done.phases).toEqual({ COMPLETED: 5, FAILED: 1 });
    expect(done.eta).toEqual({ seconds: "0", nanos: 0 });
    expect(done.waves.map((w: any) => [w.state, w.phases])).toEqual([
      ["WAVE_STATE_DONE", { COMPLETED: 1 }],
      ["WAVE_STATE_DONE", { COMPLETED: 3 }],
      ["WAVE_STATE_DONE", { COMPLETED: 1, FAILED: 1 }],
    ]);

    // From the migrations' own event logs: the order, the limits, the window.
    const spans = await Promise.all(
      done.items
        .filter((i: any) => i.migration_id)
        .map(async (i: any) => {
          const events = await eventsSoFar(clients[via]!.migrations, i.migration_id);
          const at = (e: any) => Number(e.at.seconds) * 1000 + Math.floor(e.at.nanos / 1e6);
          const phaseAt = (p: string) => events.filter((x) => x.transition?.to === p).map(at)[0];
          const ended = events
            .filter((x) =>
              ["PHASE_COMPLETED", "PHASE_FAILED", "PHASE_ABORTED", "PHASE_ROLLED_BACK"].includes(x.transition?.to),
            )
            .map(at)[0]!;
          return {
            db: i.database_name,
            wave: i.wave,
            created: at(events[0]),
            quiescing: phaseAt("PHASE_QUIESCING"),
            completed: phaseAt("PHASE_COMPLETED"),
            ended,
          };
        }),
    );
    expect(maxOverlap(spans.map((s) => [s.created, s.ended]))).toBeLessThanOrEqual(2);
    const cutovers = spans
      .filter((s) => s.quiescing !== undefined)
      .map((s) => [s.quiescing!, s.completed!] as [number, number]);
    expect(cutovers).toHaveLength(5);
    expect(maxOverlap(cutovers)).toBe(1);
    for (const s of spans) {
      if (s.quiescing !== undefined)
        expect(s.quiescing, `${s.db}'s cutover inside the window`).toBeGreaterThanOrEqual(opens.getTime() - 1000);
      const before = spans.filter((x) => x.wave < s.wave);
      for (const b of before)
        expect(s.created, `${s.db} (wave ${s.wave}) after ${b.db} (wave ${b.wave}) ended`).toBeGreaterThanOrEqual(
          b.ended,
        );
    }
    // The watch (on replica 1, which may have been the one killed: then its stream broke) saw the campaign move.
    await watch;
    if (via === 1) expect(watchError).toBeUndefined();
    const states = watched.map((c) => c.state).filter((x, i, a) => i === 0 || a[i - 1] !== x);
    expect(states[0]).toBe("CAMPAIGN_STATE_RUNNING");
    if (via === 1)
      expect(states).toEqual([
        "CAMPAIGN_STATE_RUNNING",
        "CAMPAIGN_STATE_PAUSED",
        "CAMPAIGN_STATE_RUNNING",
        "CAMPAIGN_STATE_COMPLETED",
      ]);
    expect(
      watched.some(
        (c) => c.waves[0].state === "WAVE_STATE_RUNNING" && c.items[0].waiting_for === "the campaign's change windows",
      ),
    ).toBe(true);
    // Nothing more than one migration per database, whatever replica acted.
    expect(new Set(spans.map((s) => s.db)).size).toBe(spans.length);
  }, 600_000);

  it("pgshift ctl campaign: a campaign from a spec file, paused when its migration cannot be made, then cancelled", async () => {
    const api = `http://${pair.replicas[via]!.address}`;
    const file = join(tmp.dir, "again.yaml");
    // fleet-a's completed migration still holds its source (until finalized): no second migration of it can start.
    writeFileSync(
      file,
      `name: again\nselect:\n  names: [fleet-a]\ntargets:\n  targets:\n    fleet-a: { id: fleet-a-second }\n`,
    );
    const made = await ctl(api, ["campaign", "create", "--spec", file, "--actor", "alice"]);
    expect(made.err).toBe("");
    const id = JSON.parse(made.out).id as string;
    const paused = await until(id, "paused: no migration", (c) => c.state === "CAMPAIGN_STATE_PAUSED");
    expect(paused.pause_reason).toMatch(
      /^could not create the migration of fleet-a: local:fleet-a-src \(wanted as source\) is the source of migration .* in COMPLETED/,
    );
    const usage = await ctl(api, ["campaign", "approve-wave", id]);
    expect([usage.code, usage.err]).toEqual([64, "pgshift ctl campaign approve-wave ID needs --wave N (1 or more)\n"]);
    const noWave = await ctl(api, ["campaign", "approve-wave", id, "--wave", "5"]);
    expect([noWave.code, noWave.err]).toEqual([1, `NotFound: campaign ${id} has no wave 5; its waves are 0 to 0\n`]);
    const cancelled = await ctl(api, ["campaign", "cancel", id, "--reason", "finalize fleet-a first"]);
    expect(JSON.parse(cancelled.out).state).toBe("CAMPAIGN_STATE_CANCELLED");
    const again = await ctl(api, ["campaign", "resume", id]);
    expect([again.code, again.err]).toEqual([
      1,
      `FailedPrecondition: campaign ${id} is CANCELLED; it can become RUNNING only from PAUSED\n`,
    ]);
    const listed = await ctl(api, ["campaign", "list"]);
    expect(
      listed.out
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l).spec.name),
    ).toEqual(["again", "fleet"]);
    const bad = await ctl(api, ["campaign", "create", "--spec", join(tmp.dir, "missing.yaml")]);
    expect([bad.code, bad.err]).toEqual([64, `--spec ${join(tmp.dir, "missing.yaml")}: ENOENT\n`]);
  }, 60_000);

  it("tells each team of its databases' cutovers, failures and the campaign's pauses: once each, signed, retried", async () => {
    // billing (JSON): fleet-a, b, c ready, started, done; both campaigns' pauses. search (Slack): fleet-d, f ready,
    // started, done; fleet-e failed; the fleet campaign's pause.
    const got = await receiver.until((r) => r.billing.length >= 11 && r.search.length >= 8, 60_000);
    expect(receiver.badSignatures).toBe(0);
    // The first POST was refused (HTTP 500): it came again, and counts once.
    expect(receiver.refused).toHaveLength(1);
    expect([...got.billing, ...got.search].map((d) => d.id)).toContain(receiver.refused[0]);
    for (const team of ["billing", "search"] as const) {
      const ids = got[team].map((d) => d.id);
      expect(new Set(ids).size, `${team}: each notification once`).toBe(ids.length);
    }
    const kinds = got.billing.map((d) => `${d.body.kind} ${d.body.database ?? d.body.campaignName}`).sort();
    expect(kinds).toEqual(
      [
        ...["fleet-a", "fleet-b", "fleet-c"].flatMap((db) => [
          `ready_for_cutover ${db}`,
          `cutover_started ${db}`,
          `cutover_done ${db}`,
        ]),
        "campaign_paused fleet",
        "campaign_paused again",
      ].sort(),
    );
    for (const d of got.billing.filter((x) => x.body.kind === "cutover_done"))
      expect(d.body.windowMs).toBeGreaterThan(0);
    const texts = got.search.map((d) => d.body.text as string);
    expect(texts.filter((t) => / cutover done, writes were refused for \d+ ms/.test(t))).toHaveLength(2);
    expect(texts.filter((t) => /fleet-e: migration .* failed/.test(t))).toHaveLength(1);
    expect(texts.filter((t) => /campaign fleet: paused: 1 migration\(s\) failed/.test(t))).toHaveLength(1);
    // Every delivery is in the event log of what it was about.
    const a = (await get((await unary(clients[via]!.campaigns, "ListCampaigns", {})).campaigns[1].id)).items[0];
    await expect
      .poll(
        async () =>
          (await eventsSoFar(clients[via]!.migrations, a.migration_id))
            .filter((e) => e.type === "EVENT_TYPE_NOTIFICATION")
            .map((e) => e.message)
            .sort(),
        { timeout: 10_000 },
      )
      .toEqual([
        "team billing notified of cutover_done",
        "team billing notified of cutover_started",
        "team billing notified of ready_for_cutover",
      ]);
  }, 90_000);
});
