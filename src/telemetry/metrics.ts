import { PrometheusExporter } from "@opentelemetry/exporter-prometheus";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { createServer, type Server } from "node:http";
import { PrometheusSerializer } from "@opentelemetry/exporter-prometheus";
import type { Meter } from "@opentelemetry/api";
import { MeterProvider, MetricReader } from "@opentelemetry/sdk-metrics";
import { PHASES } from "../domain/phases.js";

/** What the store holds that the gauges show, read at each scrape (so they match GetMigration). */
export interface TelemetrySnapshot {
  /** Migrations per phase; a phase with none may be absent. */
  byPhase: Map<string, number>;
  active: {
    id: string;
    databaseName: string;
    phase: string;
    /** The lag gate's last sample. */
    replication?: { lagBytes: number | null; lagSeconds: number | null; walBytesPerSec: number };
    phaseEnteredAt?: string;
    /** The failure policy holds it in its phase for an operator. */
    held: boolean;
    paused: boolean;
    /** With CDC slots on record: seconds its consumers have been paused (0 while they read). */
    cdcPausedSeconds?: number;
    /** WAL the CDC slots kept on the source retain, by slot. */
    cdcRetained: Map<string, number>;
    reverse?: { lagBytes: number; retainedBytes: number; drainEstimateSeconds?: number };
  }[];
}

/** The part of a committed event the counters read. */
export interface CommittedEvent {
  type: string;
  actor: string;
  message: string;
  phase_to: string | null;
  payload: unknown;
}

/** Why a rollback started, as a label: an operator asked, or the failure policy (a NACK, a deadline, a failed step). */
export function rollbackReason(e: CommittedEvent): string {
  if (e.actor !== "engine" || /^rollback requested/.test(e.message)) return "operator";
  if (/nack|rejected/i.test(e.message)) return "nack";
  if (/deadline/i.test(e.message)) return "deadline";
  return "step_failed";
}
export const ROLLBACK_REASONS = ["operator", "nack", "deadline", "step_failed"] as const;

/** What the service measures about itself, exported for Prometheus when a port is given. */
export interface ServiceMetrics {
  /** A migration's CDC consumers were paused longer than its alert threshold. */
  cdcPauseAlert(migrationId: string, databaseName: string): void;
  /** A migration with CDC consumers is being driven: its pause-alert counter starts at zero. */
  cdcTracked(migrationId: string, databaseName: string): void;
  /** A phase ended: how long it took, and how (advanced, fell_back, rolled_back, failed, aborted). */
  phaseEnded(phase: string, outcome: string, seconds: number): void;
  /** A cutover's window closed: from the fence to every ACK (ROUTED), or to the fall-back. */
  cutoverEnded(outcome: string, seconds: number): void;
  /** Events this replica committed: rollbacks started and check verdicts are counted from them. */
  events(events: CommittedEvent[]): void;
  /** A proxy ACKed a version of a resource type, this long after the version was made; or NACKed it. */
  xdsAck(typeUrl: string, seconds: number | undefined): void;
  xdsNack(typeUrl: string): void;
  /** An API call ended. */
  rpc(r: { service: string; method: string; code: string; seconds: number }): void;
  shutdown(): Promise<void>;
}

const typeName = (typeUrl: string) => typeUrl.slice(typeUrl.lastIndexOf("/") + 1);

/**
 * OpenTelemetry metrics. With a port, a Prometheus endpoint serves them at
 * http://host:port/metrics; without one they are kept and dropped.
 */
export function createMetrics(
  opts: {
    port?: number;
    host?: string;
    proxiesBehind?: () => Promise<Map<string, number>>;
    snapshot?: () => Promise<TelemetrySnapshot>;
    connectedProxies?: () => number;
    /** Extra readers (tests: an in-memory one). */
    readers?: MetricReader[];
    /** The endpoint could not listen (its port taken) or failed: said, and the service goes on without it. */
    onError?: (e: Error) => void;
  } = {},
): ServiceMetrics {
  // Served by our own endpoint: OpenTelemetry's collection plus the per-migration gauges, read fresh at each scrape.
  const exporter = opts.port ? new PrometheusExporter({ preventServerStart: true }) : undefined;
  const provider = new MeterProvider({
    resource: resourceFromAttributes({ "service.name": "pgshift" }),
    readers: [...(exporter ? [exporter] : []), ...(opts.readers ?? [])],
  });
  const server =
    exporter && opts.port
      ? serveMetrics(exporter, opts.port, opts.host ?? "127.0.0.1", opts.snapshot, opts.onError)
      : undefined;
  const meter = provider.getMeter("pgshift");
  const connected = opts.connectedProxies;
  meter
    .createObservableGauge("pgshift_xds_connected_proxies", {
      description: "Proxies (xDS streams) connected to this replica",
    })
    .addCallback((r) => r.observe(connected ? connected() : 0));
  const phaseDuration = meter.createHistogram("pgshift_phase_duration_seconds", {
    description: "How long phases took, by phase and how they ended",
    unit: "s",
    advice: { explicitBucketBoundaries: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 14400] },
  });
  const window = meter.createHistogram("pgshift_cutover_window_seconds", {
    description: "Cutover windows: from the fence to every proxy's ACK of the new route (or to the fall-back)",
    unit: "s",
    advice: { explicitBucketBoundaries: [0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30] },
  });
  const rollbacks = meter.createCounter("pgshift_rollbacks", { description: "Rollbacks started, by reason" });
  for (const reason of ROLLBACK_REASONS) rollbacks.add(0, { reason });
  const verdicts = meter.createCounter("pgshift_check_results", {
    description: "Check verdicts logged, by check and status",
  });
  const ackLatency = meter.createHistogram("pgshift_xds_ack_latency_seconds", {
    description: "From a route change reaching the xDS cache to a proxy's ACK of it",
    unit: "s",
    advice: { explicitBucketBoundaries: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5] },
  });
  const nacks = meter.createCounter("pgshift_xds_nacks", { description: "Resources a proxy rejected (NACK), by type" });
  for (const type of ["envoy.config.cluster.v3.Cluster", "envoy.config.listener.v3.Listener"]) nacks.add(0, { type });
  const rpcDuration = meter.createHistogram("rpc.server.call.duration", {
    description: "API calls, by service, method and gRPC status (OpenTelemetry RPC conventions)",
    unit: "s",
    advice: { explicitBucketBoundaries: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60] },
  });
  const tracked = new Set<string>();
  const alerts = meter.createCounter("pgshift_cdc_pause_alerts", {
    description: "CDC consumers paused longer than cdc_policy.pause_alert_after, per migration",
  });
  const behind = opts.proxiesBehind;
  if (behind) {
    meter
      .createObservableGauge("pgshift_xds_proxies_behind", {
        description:
          "Sidecars known to serve a database that have not applied its current route version (gone, or never reconnected)",
      })
      .addCallback(async (r) => {
        for (const [databaseName, n] of await behind()) r.observe(n, { database_name: databaseName });
      });
  }
  return {
    phaseEnded: (phase, outcome, seconds) => phaseDuration.record(seconds, { phase, outcome }),
    cutoverEnded: (outcome, seconds) => window.record(seconds, { outcome }),
    events: (events) => {
      for (const e of events) {
        if (e.type === "PHASE_CHANGED" && e.phase_to === "ROLLING_BACK")
          rollbacks.add(1, { reason: rollbackReason(e) });
        if (e.type === "CHECK_RESULT") {
          const c = (e.payload as { check?: { name?: string; status?: string } }).check;
          if (c?.name) verdicts.add(1, { check: c.name, status: c.status ?? "" });
        }
      }
    },
    xdsAck: (typeUrl, seconds) => {
      if (seconds !== undefined) ackLatency.record(seconds, { type: typeName(typeUrl) });
    },
    xdsNack: (typeUrl) => nacks.add(1, { type: typeName(typeUrl) }),
    rpc: (r) =>
      rpcDuration.record(r.seconds, {
        "rpc.system": "grpc",
        "rpc.service": r.service,
        "rpc.method": r.method,
        "rpc.grpc.status_code": r.code,
      }),
    cdcPauseAlert: (id, databaseName) => alerts.add(1, { migration_id: id, database_name: databaseName }),
    cdcTracked: (id, databaseName) => {
      if (tracked.has(id)) return;
      tracked.add(id);
      alerts.add(0, { migration_id: id, database_name: databaseName });
    },
    shutdown: async () => {
      await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
      await provider.shutdown();
    },
  };
}

/** A reader collected once, by hand, for one scrape's gauges. */
class OnceReader extends MetricReader {
  protected async onForceFlush(): Promise<void> {}
  protected async onShutdown(): Promise<void> {}
}

/**
 * The gauges of each migration, from what the store holds now. Made on a meter of their own at each scrape: an
 * OpenTelemetry gauge keeps reporting an attribute set it once saw, so a finished migration (or a phase label it
 * left) would linger with its last value; made afresh, a series lives exactly as long as what it describes.
 */
function snapshotGauges(meter: Meter, s: TelemetrySnapshot): void {
  const ids = (m: TelemetrySnapshot["active"][number]) => ({ migration_id: m.id, database_name: m.databaseName });
  meter
    .createObservableGauge("pgshift_migrations", { description: "Migrations per phase (every phase, zero when none)" })
    .addCallback((r) => {
      for (const phase of PHASES) r.observe(s.byPhase.get(phase) ?? 0, { phase });
    });
  meter
    .createObservableGauge("pgshift_migration_phase_seconds", {
      description: "How long each active migration has been in its current phase",
      unit: "s",
    })
    .addCallback((r) => {
      for (const m of s.active)
        if (m.phaseEnteredAt)
          r.observe((Date.now() - Date.parse(m.phaseEnteredAt)) / 1000, { ...ids(m), phase: m.phase });
    });
  meter
    .createObservableGauge("pgshift_migration_held", {
      description:
        "1 while the failure policy holds a migration for an operator, 2 while an operator paused it, else 0",
    })
    .addCallback((r) => {
      for (const m of s.active) r.observe(m.held ? 1 : m.paused ? 2 : 0, { ...ids(m), phase: m.phase });
    });
  const perMigration = (
    name: string,
    description: string,
    unit: string,
    pick: (x: NonNullable<TelemetrySnapshot["active"][number]["replication"]>) => number | null,
  ) =>
    meter.createObservableGauge(name, { description, unit }).addCallback((r) => {
      for (const m of s.active) {
        const v = m.replication ? pick(m.replication) : null;
        if (v !== null && v !== undefined) r.observe(v, ids(m));
      }
    });
  const gauge = (
    name: string,
    description: string,
    unit: string,
    each: (
      m: TelemetrySnapshot["active"][number],
      observe: (v: number, extra?: Record<string, string>) => void,
    ) => void,
  ) =>
    meter.createObservableGauge(name, { description, unit }).addCallback((r) => {
      for (const m of s.active) each(m, (v, extra = {}) => r.observe(v, { ...ids(m), ...extra }));
    });
  gauge(
    "pgshift_cdc_paused_seconds",
    "How long a migration's CDC consumers have been paused (0 while they read)",
    "s",
    (m, o) => {
      if (m.cdcPausedSeconds !== undefined) o(m.cdcPausedSeconds);
    },
  );
  gauge(
    "pgshift_cdc_retained_wal_bytes",
    "WAL held back on a migration's source by the CDC slots kept there for a rollback, until finalize",
    "By",
    (m, o) => {
      for (const [slot, b] of m.cdcRetained) o(b, { slot_name: slot });
    },
  );
  gauge(
    "pgshift_reverse_lag_bytes",
    "Bytes of the promoted target's WAL the source has not applied (what a rollback must drain)",
    "By",
    (m, o) => {
      if (m.reverse) o(m.reverse.lagBytes);
    },
  );
  gauge(
    "pgshift_reverse_retained_wal_bytes",
    "WAL the promoted target retains for reverse replication, until finalize",
    "By",
    (m, o) => {
      if (m.reverse) o(m.reverse.retainedBytes);
    },
  );
  gauge(
    "pgshift_rollback_drain_estimate_seconds",
    "How long a rollback would stop writes to apply the reverse backlog, at the measured rate",
    "s",
    (m, o) => {
      if (m.reverse?.drainEstimateSeconds !== undefined) o(m.reverse.drainEstimateSeconds);
    },
  );
  perMigration(
    "pgshift_replication_lag_bytes",
    "Bytes of the source's WAL the replica has not replayed, as the lag gate last sampled it",
    "By",
    (x) => x.lagBytes,
  );
  perMigration(
    "pgshift_replication_lag_seconds",
    "The replica's replay delay, as the lag gate last sampled it",
    "s",
    (x) => x.lagSeconds,
  );
  perMigration(
    "pgshift_wal_rate_bytes_per_second",
    "WAL the source generates per second, between the lag gate's last two samples",
    "By/s",
    (x) => x.walBytesPerSec,
  );
}

/** GET /metrics: the service's OpenTelemetry metrics and the per-migration gauges, in Prometheus's text format. */
function serveMetrics(
  exporter: PrometheusExporter,
  port: number,
  host: string,
  snapshot: (() => Promise<TelemetrySnapshot>) | undefined,
  onError: ((e: Error) => void) | undefined,
): Server {
  const serializer = new PrometheusSerializer();
  const perScrape = new PrometheusSerializer(undefined, undefined, undefined, true);
  const server = createServer((req, res) => {
    if (req.method !== "GET" || (req.url ?? "").split("?")[0] !== "/metrics") {
      res.writeHead(404).end("not found: metrics are at /metrics\n");
      return;
    }
    void (async () => {
      let text = serializer.serialize((await exporter.collect()).resourceMetrics);
      if (snapshot) {
        const reader = new OnceReader();
        const provider = new MeterProvider({
          resource: resourceFromAttributes({ "service.name": "pgshift" }),
          readers: [reader],
        });
        try {
          snapshotGauges(provider.getMeter("pgshift"), await snapshot());
          text += perScrape.serialize((await reader.collect()).resourceMetrics);
        } finally {
          await provider.shutdown();
        }
      }
      res.writeHead(200, { "content-type": "text/plain; version=0.0.4; charset=utf-8" }).end(text);
    })().catch((e: unknown) => {
      if (!res.headersSent) res.writeHead(500);
      res.end(`# metrics collection failed: ${e instanceof Error ? e.message : String(e)}\n`);
    });
  });
  // A metrics port already taken must not take the service down with it (an unhandled 'error' would).
  server.on("error", (e) => (onError ?? ((x: Error) => process.stderr.write(`metrics endpoint: ${x.message}\n`)))(e));
  server.listen(port, host);
  return server;
}
