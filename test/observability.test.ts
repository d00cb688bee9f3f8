import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { join, resolve } from "node:path";
import { tracing } from "@opentelemetry/sdk-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { parseServiceConfig } from "../src/config.js";
import { CdcConsumer } from "../testing/cdc/consumer.js";
import { freePort } from "../src/postgres/ports.js";
import { LocalProvider } from "../src/providers/local/local-provider.js";
import { createSampleSource } from "../testing/sample.js";
import { XdsTcpProxy } from "../src/proxy/xds-tcp-proxy.js";
import { startService, type RunningService } from "../src/service/start.js";
import { createLogger } from "../src/telemetry/log.js";
import { PHASES } from "../src/domain/phases.js";
import { migrationTraceId } from "../src/telemetry/trace-ids.js";
import { WriteLoad } from "../testing/workload/write-load.js";
import { migrationClient, unary, type AnyClient } from "./helpers/grpc-clients.js";
import { getMigration, localSpec, waitForPhase } from "./helpers/migrations.js";
import { startServiceProcess, tempDir } from "./helpers/service-process.js";
import { destroyClusters } from "./helpers/clusters.js";

const ROOT = resolve(import.meta.dirname, "..");

/** One scrape of /metrics: each sample line as name{labels} -> value. */
async function scrape(
  port: number,
): Promise<{ text: string; samples: { name: string; labels: Record<string, string>; value: number }[] }> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const samples = [];
  for (const line of text.split("\n")) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const l of m[2]?.matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g) ?? []) labels[l[1]!] = l[2]!;
    samples.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return { text, samples };
}

const value = (s: Awaited<ReturnType<typeof scrape>>["samples"], name: string, labels: Record<string, string> = {}) =>
  s.filter((x) => x.name === name && Object.entries(labels).every(([k, v]) => x.labels[k] === v)).map((x) => x.value);

/** Metric names an expression refers to (what is not a PromQL function, keyword or label). */
function metricNames(expr: string): string[] {
  const noStrings = expr.replace(/"(?:[^"\\]|\\.)*"/g, '""');
  const noLabels = noStrings
    .replace(/\{[^}]*\}/g, "")
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, "");
  const words = noLabels.match(/[a-zA-Z_:][\w:]*/g) ?? [];
  const promql = new Set([
    "sum",
    "max",
    "min",
    "avg",
    "rate",
    "increase",
    "histogram_quantile",
    "count",
    "and",
    "or",
    "unless",
    "le",
    "bool",
    "offset",
  ]);
  return [...new Set(words.filter((w) => !promql.has(w) && /^(pgshift_|rpc_)/.test(w)))];
}

/** The family a sample name belongs to (histogram series and counters' _total are one metric). */
const family = (n: string) => n.replace(/_(bucket|sum|count)$/, "");

describe("observability: one trace per migration, the on-call metrics, a dashboard that cannot drift", () => {
  const tmp = tempDir("obs");
  const exporter = new tracing.InMemorySpanExporter();
  const provider = new LocalProvider(join(tmp.dir, "local"));
  let svc: RunningService;
  let client: AnyClient;
  let proxy: XdsTcpProxy;
  let metricsPort: number;

  beforeAll(async () => {
    metricsPort = await freePort();
    const config = parseServiceConfig([
      "--insecure",
      "--port",
      "0",
      "--xds-port",
      "0",
      "--data-dir",
      tmp.dir,
      "--metrics-port",
      String(metricsPort),
      "--baseline-sample-ms",
      "1000",
    ]);
    svc = await startService(config, createLogger("warn"), {
      spanProcessors: [new tracing.SimpleSpanProcessor(exporter)],
    });
    client = migrationClient(`127.0.0.1:${svc.port}`);
    proxy = new XdsTcpProxy({ xds: `127.0.0.1:${svc.xdsPort}`, nodeId: "obs-sidecar", listenPort: () => 0 });
    await proxy.start();
  });

  afterAll(async () => {
    await proxy?.stop();
    client?.close();
    await svc?.stop();
    await destroyClusters(provider);
    tmp.remove();
  });

  it("gauges answer at once after start, before any migration", async () => {
    const { samples } = await scrape(metricsPort);
    expect(value(samples, "pgshift_migrations", { phase: "REPLICATING" })).toEqual([0]);
    expect(value(samples, "pgshift_migrations", { phase: "COMPLETED" })).toEqual([0]);
    expect(value(samples, "pgshift_xds_connected_proxies")).toHaveLength(1);
    expect(value(samples, "pgshift_xds_nacks_total").length).toBeGreaterThan(0);
  });

  it("a migration on the demo's path: spans in order, cutover parts adding up to the window; metrics matching GetMigration; dashboard and alerts on real metrics", async () => {
    const { app, cdc } = await createSampleSource(provider, "obs-src", { rows: 2000, cdc: true });
    const consumer = new CdcConsumer({
      api: `http://127.0.0.1:${svc.port}`,
      databaseName: "obs-db",
      ...cdc!,
      slot: cdc!.slot,
    });
    consumer.start();
    const m = (
      await unary(client, "CreateMigration", {
        spec: localSpec("obs-db", "obs-src", "obs-tgt", { lag_policy: { window: { seconds: 3 } } }),
      })
    ).migration;
    const port = await proxy.waitForListener("obs-db");
    const load = new WriteLoad({ host: "127.0.0.1", port, ...app, ratePerSec: 50 });
    load.start();
    try {
      // During the lag gate: the lag gauges are the sample GetMigration shows (scraped around it, as samples move once a second).
      await waitForPhase(client, m.id, ["PHASE_REPLICATING"]);
      let during: { lag: number[]; got: any } | undefined;
      for (let i = 0; i < 40 && !during; i++) {
        const a = await scrape(metricsPort);
        const got = await getMigration(client, m.id);
        const b = await scrape(metricsPort);
        const lag = [
          ...value(a.samples, "pgshift_replication_lag_bytes", { migration_id: m.id }),
          ...value(b.samples, "pgshift_replication_lag_bytes", { migration_id: m.id }),
        ];
        if (got.replication && lag.length > 0) during = { lag, got };
        else await new Promise((r) => setTimeout(r, 250));
      }
      expect(during, "lag sampled while REPLICATING").toBeDefined();
      expect(during!.lag).toContain(Number(during!.got.replication.lag_bytes));
      expect(value((await scrape(metricsPort)).samples, "pgshift_migrations", { phase: "REPLICATING" })).toEqual([1]);

      await waitForPhase(client, m.id, ["PHASE_READY_FOR_CUTOVER"]);
      await unary(client, "ApproveCutover", { id: m.id, reason: "observability test" });
      expect((await waitForPhase(client, m.id, ["PHASE_COMPLETED", "PHASE_ROLLED_BACK", "PHASE_FAILED"])).phase).toBe(
        "PHASE_COMPLETED",
      );
    } finally {
      await load.stop();
    }
    // COMPLETED's watch samples reverse replication and the kept slots' WAL into the state within seconds.
    let got = await getMigration(client, m.id);
    for (
      let i = 0;
      i < 60 &&
      !(got.reverse?.rollback_drain_estimate && got.cdc_slots.some((c: any) => Number(c.retained_wal_bytes) > 0));
      i++
    ) {
      await new Promise((r) => setTimeout(r, 250));
      got = await getMigration(client, m.id);
    }
    const durMs = (d: { seconds: string; nanos: number }) => Number(d.seconds) * 1000 + d.nanos / 1e6;
    const windowMs = durMs(got.cutover.window);
    expect(got.cutover.outcome).toBe("ROUTED");
    // The window broken down into its parts, each in the phase that ran it, in start order, inside the window.
    const timed = (got.cutover.parts as any[]).map((p) => ({
      name: p.name as string,
      phase: p.phase as string,
      start: durMs(p.offset),
      end: durMs(p.offset) + durMs(p.duration),
      failed: p.failed as boolean,
    }));
    const phaseOf = Object.fromEntries(timed.map((p) => [p.name, p.phase]));
    expect(phaseOf).toMatchObject({
      fence: "PHASE_QUIESCING",
      final_lsn: "PHASE_FINAL_SYNC",
      replay: "PHASE_FINAL_SYNC",
      promote: "PHASE_PROMOTING",
      reverse_slots: "PHASE_PROMOTING",
      route: "PHASE_ROUTING",
      ack: "PHASE_ROUTING",
    });
    expect(timed.filter((p) => p.failed)).toEqual([]);
    expect(timed.map((p) => p.start)).toEqual([...timed.map((p) => p.start)].sort((a, b) => a - b));
    for (const p of timed) expect(p.end, p.name).toBeLessThanOrEqual(windowMs + 1);
    const at = (name: string) => timed.find((p) => p.name === name)!;
    expect(at("promote").start).toBeGreaterThanOrEqual(at("replay").end - 1);
    expect(at("ack").start).toBeGreaterThanOrEqual(at("route").end - 1);

    // After: the phase gauge, the window histogram and the per-phase durations match what the migration holds.
    const after = await scrape(metricsPort);
    expect(value(after.samples, "pgshift_migrations", { phase: "COMPLETED" })).toEqual([1]);
    expect(value(after.samples, "pgshift_cutover_window_seconds_count", { outcome: "ROUTED" })).toEqual([1]);
    expect(value(after.samples, "pgshift_cutover_window_seconds_sum", { outcome: "ROUTED" })[0]! * 1000).toBeCloseTo(
      windowMs,
      0,
    );
    for (const phase of ["PREFLIGHT", "REPLICATING", "QUIESCING", "PROMOTING", "ROUTING", "VERIFYING"]) {
      expect(
        value(after.samples, "pgshift_phase_duration_seconds_count", { phase, outcome: "advanced" }),
        phase,
      ).toEqual([1]);
    }
    expect(value(after.samples, "pgshift_xds_ack_latency_seconds_count").reduce((a, b) => a + b, 0)).toBeGreaterThan(0);
    expect(
      value(after.samples, "rpc_server_call_duration_count", {
        rpc_method: "ApproveCutover",
        rpc_grpc_status_code: "OK",
      }),
    ).toEqual([1]);
    expect(
      value(after.samples, "pgshift_check_results_total", { check: "replication.lag_window", status: "PASS" }),
    ).toEqual([1]);
    expect(value(after.samples, "pgshift_replication_lag_bytes", { migration_id: m.id })).toEqual([
      Number(got.replication.lag_bytes),
    ]);
    expect(value(after.samples, "pgshift_migration_held", { migration_id: m.id })).toEqual([0]);
    expect(value(after.samples, "pgshift_cdc_paused_seconds", { migration_id: m.id }).length).toBe(1);
    expect(value(after.samples, "pgshift_reverse_lag_bytes", { migration_id: m.id }).length).toBe(1);
    const slot = got.cdc_slots[0];
    expect(
      value(after.samples, "pgshift_cdc_retained_wal_bytes", { migration_id: m.id, slot_name: slot.slot_name }),
    ).toEqual([Number(slot.retained_wal_bytes)]);

    // Every metric the dashboard and the alert rules name is on /metrics, and every one an on-call engineer is promised.
    const present = new Set(after.samples.map((s) => family(s.name)));
    const promised = [
      "pgshift_migrations",
      "pgshift_phase_duration_seconds",
      "pgshift_replication_lag_bytes",
      "pgshift_replication_lag_seconds",
      "pgshift_wal_rate_bytes_per_second",
      "pgshift_cutover_window_seconds",
      "pgshift_rollbacks_total",
      "pgshift_xds_connected_proxies",
      "pgshift_xds_ack_latency_seconds",
      "pgshift_xds_nacks_total",
      "pgshift_cdc_paused_seconds",
      "pgshift_cdc_pause_alerts_total",
      "pgshift_cdc_retained_wal_bytes",
      "rpc_server_call_duration",
    ];
    expect(promised.filter((n) => !present.has(n))).toEqual([]);
    const dashboard = JSON.parse(readFileSync(join(ROOT, "deploy/grafana/pgshift.json"), "utf8"));
    const exprs: string[] = dashboard.panels.flatMap((p: any) => p.targets.map((t: any) => t.expr));
    const rules = parse(readFileSync(join(ROOT, "deploy/prometheus/alerts.yml"), "utf8"));
    exprs.push(...rules.groups.flatMap((g: any) => g.rules.map((r: any) => r.expr)));
    const named = [...new Set(exprs.flatMap(metricNames))];
    expect(named.length).toBeGreaterThan(15);
    expect(
      named.filter((n) => !present.has(family(n))),
      "named by the dashboard or alerts but absent from /metrics",
    ).toEqual([]);

    // The trace ends at finalize: one trace, the migration's id, every phase in order.
    await unary(client, "FinalizeMigration", { id: m.id });
    expect((await waitForPhase(client, m.id, ["PHASE_FINALIZED"])).phase).toBe("PHASE_FINALIZED");
    await consumer.stop();
    const traceId = migrationTraceId(m.id);
    let spans = exporter.getFinishedSpans().filter((s) => s.spanContext().traceId === traceId);
    for (let i = 0; i < 40 && !spans.some((s) => s.name === "migration obs-db"); i++) {
      await new Promise((r) => setTimeout(r, 100));
      spans = exporter.getFinishedSpans().filter((s) => s.spanContext().traceId === traceId);
    }
    const ms = (t: [number, number]) => t[0] * 1000 + t[1] / 1e6;
    const root = spans.find((s) => s.name === "migration obs-db")!;
    expect(root).toBeDefined();
    expect(root.attributes["pgshift.final_phase"]).toBe("FINALIZED");
    const phases = spans.filter((s) => s.name.startsWith("phase ")).sort((a, b) => ms(a.startTime) - ms(b.startTime));
    // The happy path, in the order the phase model lists it, up to COMPLETED.
    expect(phases.map((s) => s.name.slice(6))).toEqual(PHASES.slice(0, PHASES.indexOf("COMPLETED") + 1));
    for (const s of phases) expect(s.attributes["pgshift.migration_id"]).toBe(m.id);

    // The cutover span is the window GetMigration reports; the phases inside it are its children and add up to it.
    const cutover = spans.find((s) => s.name === "cutover")!;
    expect(ms(cutover.endTime) - ms(cutover.startTime)).toBeCloseTo(windowMs, 0);
    const inside = phases.filter((s) => s.parentSpanContext?.spanId === cutover.spanContext().spanId);
    expect(inside.map((s) => s.name.slice(6))).toEqual([
      "QUIESCING",
      "FINAL_SYNC",
      "CDC_PREPARE",
      "PROMOTING",
      "CDC_RESTORE",
      "ROUTING",
    ]);
    const sum = inside.reduce((a, s) => a + (ms(s.endTime) - ms(s.startTime)), 0);
    expect(sum).toBeCloseTo(windowMs, 0);

    // Step attempts under their phases, and the cutover's parts under the attempts.
    const attempts = spans.filter((s) => s.name.startsWith("step "));
    const byId = new Map(spans.map((s) => [s.spanContext().spanId, s]));
    const parentName = (s: tracing.ReadableSpan) => byId.get(s.parentSpanContext?.spanId ?? "")?.name;
    for (const a of attempts) expect(parentName(a), a.name).toBe(`phase ${a.name.slice(5)}`);
    const parts = [
      "fence",
      "final_lsn",
      "replay",
      "cdc_drain",
      "promote",
      "reverse_slots",
      "cdc_restore",
      "route",
      "ack",
    ];
    for (const p of parts) {
      const s = spans.find((x) => x.name === p);
      expect(s, p).toBeDefined();
      expect(parentName(s!), p).toMatch(/^step /);
    }
    const part = (n: string) => spans.find((x) => x.name === n)!;
    expect(ms(part("fence").startTime)).toBeLessThan(ms(part("promote").startTime));
    expect(ms(part("promote").startTime)).toBeLessThan(ms(part("ack").startTime));
    // Every verdict is an event: on its attempt's span, or (logged with the transition) on its phase's.
    const lagPass = [...attempts, ...phases]
      .flatMap((a) => a.events)
      .find(
        (e) =>
          e.attributes?.["pgshift.check"] === "replication.lag_window" &&
          e.attributes["pgshift.check.status"] === "PASS",
      );
    expect(lagPass).toBeDefined();
    const slotPass = attempts
      .flatMap((a) => a.events)
      .find(
        (e) =>
          e.attributes?.["pgshift.check"] === "slots.inactive_logical" &&
          e.attributes["pgshift.check.status"] === "PASS",
      );
    expect(slotPass).toBeDefined();

    // The API call that approved the cutover is linked from the step it triggered.
    const approve = exporter.getFinishedSpans().find((s) => s.name === "migration.v1.MigrationService/ApproveCutover")!;
    expect(approve).toBeDefined();
    const linked = attempts.filter((a) => a.links.some((l) => l.context.spanId === approve.spanContext().spanId));
    expect(linked.map((a) => a.name)).toContain("step READY_FOR_CUTOVER");
    // And the call that created it, from the first step.
    const create = exporter.getFinishedSpans().find((s) => s.name === "migration.v1.MigrationService/CreateMigration")!;
    expect(attempts.find((a) => a.name === "step PENDING")!.links.map((l) => l.context.spanId)).toContain(
      create.spanContext().spanId,
    );
    // Attempts say how they ended; the phases carry the LSN and lag they ended with.
    expect(attempts.find((a) => a.name === "step PROMOTING")!.attributes["pgshift.outcome"]).toBe("to CDC_RESTORE");
    expect(phases.find((p) => p.name === "phase FINAL_SYNC")!.attributes["pgshift.final_lsn"]).toMatch(
      /^[0-9A-F]+\/[0-9A-F]+$/,
    );
    expect(typeof phases.find((p) => p.name === "phase REPLICATING")!.attributes["pgshift.replication.lag_bytes"]).toBe(
      "number",
    );
    console.log(
      `cutover window ${windowMs.toFixed(1)} ms = ${inside.map((s) => `${s.name.slice(6)} ${(ms(s.endTime) - ms(s.startTime)).toFixed(1)}`).join(" + ")}; parts: ${parts
        .map((p) => `${p} ${(ms(part(p).endTime) - ms(part(p).startTime)).toFixed(1)}`)
        .join(", ")}`,
    );
  });

  it("the alert rules pass promtool where it is installed (Debian's prometheus package)", () => {
    let promtool: string | undefined;
    try {
      promtool = execFileSync("sh", ["-c", "command -v promtool"], { encoding: "utf8" }).trim();
    } catch {
      promtool = undefined;
    }
    if (!promtool) {
      console.log(
        "promtool is not installed here: the rules were parsed and their metrics checked above; .ci/run installs it",
      );
      expect(process.env.CI, "CI installs promtool").not.toBe("true");
      return;
    }
    const out = execFileSync(promtool, ["check", "rules", join(ROOT, "deploy/prometheus/alerts.yml")], {
      encoding: "utf8",
    });
    expect(out).toMatch(/SUCCESS: 4 rules found/);
  });

  it("with OTEL_EXPORTER_OTLP_ENDPOINT set, the service process exports its spans over OTLP/HTTP", async () => {
    const received: Buffer[] = [];
    const collector = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        if (req.url === "/v1/traces") received.push(Buffer.concat(chunks));
        res.writeHead(200, { "content-type": "application/x-protobuf" }).end();
      });
    });
    await new Promise<void>((r) => collector.listen(0, "127.0.0.1", r));
    const endpoint = `http://127.0.0.1:${(collector.address() as AddressInfo).port}`;
    const dir = tempDir("otlp");
    const p = await startServiceProcess(["--data-dir", dir.dir, "--engine", "off", "--drain-ms", "500"], {
      OTEL_EXPORTER_OTLP_ENDPOINT: endpoint,
      OTEL_BSP_SCHEDULE_DELAY: "100",
    });
    const c = migrationClient(p.address);
    try {
      await unary(c, "ListMigrations", {});
      for (let i = 0; i < 50 && !received.some((b) => b.includes("migration.v1.MigrationService/ListMigrations")); i++)
        await new Promise((r) => setTimeout(r, 100));
      expect(received.some((b) => b.includes("migration.v1.MigrationService/ListMigrations"))).toBe(true);
    } finally {
      c.close();
      await p.stop();
      dir.remove();
      collector.close();
    }
  });
});
