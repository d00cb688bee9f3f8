import { PrometheusExporter } from "@opentelemetry/exporter-prometheus";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { MeterProvider } from "@opentelemetry/sdk-metrics";

/** What the service measures about itself, exported for Prometheus when a port is given. */
export interface ServiceMetrics {
  /** A migration's CDC consumers were paused longer than its alert threshold. */
  cdcPauseAlert(migrationId: string, databaseName: string): void;
  /** Since when a migration's CDC consumers are paused; undefined when they read. */
  cdcPaused(migrationId: string, databaseName: string, since: Date | undefined): void;
  /** WAL held back on the source by the CDC slots kept there for a rollback, per slot; an empty map when none are kept. */
  cdcRetainedWal(migrationId: string, databaseName: string, bytes: Map<string, number>): void;
  /** Reverse replication's backlog, the WAL the target retains for it, and what a rollback's drain would take; undefined once it is gone. */
  reverse(migrationId: string, databaseName: string, r: { lagBytes: number; retainedBytes: number; drainEstimateSeconds?: number } | undefined): void;
  shutdown(): Promise<void>;
}

/**
 * OpenTelemetry metrics. With a port, a Prometheus endpoint serves them at
 * http://host:port/metrics; without one they are kept and dropped.
 */
export function createMetrics(opts: { port?: number; host?: string; proxiesBehind?: () => Promise<Map<string, number>> } = {}): ServiceMetrics {
  const provider = new MeterProvider({
    resource: resourceFromAttributes({ "service.name": "pgshift" }),
    readers: opts.port ? [new PrometheusExporter({ port: opts.port, host: opts.host })] : [],
  });
  const meter = provider.getMeter("pgshift");
  const alerts = meter.createCounter("pgshift_cdc_pause_alerts", {
    description: "CDC consumers paused longer than cdc_policy.pause_alert_after, per migration",
  });
  const paused = new Map<string, { databaseName: string; since: Date }>();
  meter
    .createObservableGauge("pgshift_cdc_paused_seconds", { description: "How long a migration's CDC consumers have been paused", unit: "s" })
    .addCallback((r) => {
      for (const [id, p] of paused) r.observe((Date.now() - p.since.getTime()) / 1000, { migration_id: id, database_name: p.databaseName });
    });
  const behind = opts.proxiesBehind;
  if (behind) {
    meter
      .createObservableGauge("pgshift_xds_proxies_behind", {
        description: "Sidecars known to serve a database that have not applied its current route version (gone, or never reconnected)",
      })
      .addCallback(async (r) => {
        for (const [databaseName, n] of await behind()) r.observe(n, { database_name: databaseName });
      });
  }
  const retained = new Map<string, { databaseName: string; bytes: Map<string, number> }>();
  meter
    .createObservableGauge("pgshift_cdc_retained_wal_bytes", {
      description: "WAL held back on a migration's source by the CDC slots kept there for a rollback, until finalize",
      unit: "By",
    })
    .addCallback((r) => {
      for (const [id, x] of retained) for (const [slot, b] of x.bytes) r.observe(b, { migration_id: id, database_name: x.databaseName, slot_name: slot });
    });
  const reverse = new Map<string, { databaseName: string; lagBytes: number; retainedBytes: number; drainEstimateSeconds?: number }>();
  const each = (
    r: { observe(v: number, a: Record<string, string>): void },
    pick: (x: { lagBytes: number; retainedBytes: number; drainEstimateSeconds?: number }) => number | undefined,
  ) => {
    for (const [id, x] of reverse) {
      const v = pick(x);
      if (v !== undefined) r.observe(v, { migration_id: id, database_name: x.databaseName });
    }
  };
  meter
    .createObservableGauge("pgshift_reverse_lag_bytes", {
      description: "Bytes of the promoted target's WAL the source has not applied (what a rollback must drain)",
      unit: "By",
    })
    .addCallback((r) => each(r, (x) => x.lagBytes));
  meter
    .createObservableGauge("pgshift_reverse_retained_wal_bytes", {
      description: "WAL the promoted target retains for reverse replication, until finalize",
      unit: "By",
    })
    .addCallback((r) => each(r, (x) => x.retainedBytes));
  meter
    .createObservableGauge("pgshift_rollback_drain_estimate_seconds", {
      description: "How long a rollback would stop writes to apply the reverse backlog, at the measured rate",
      unit: "s",
    })
    .addCallback((r) => each(r, (x) => x.drainEstimateSeconds));
  return {
    reverse: (id, databaseName, r) => {
      if (r) reverse.set(id, { databaseName, ...r });
      else reverse.delete(id);
    },
    cdcRetainedWal: (id, databaseName, bytes) => {
      if (bytes.size > 0) retained.set(id, { databaseName, bytes });
      else retained.delete(id);
    },
    cdcPauseAlert: (id, databaseName) => alerts.add(1, { migration_id: id, database_name: databaseName }),
    cdcPaused: (id, databaseName, since) => {
      if (since) paused.set(id, { databaseName, since });
      else paused.delete(id);
    },
    shutdown: () => provider.shutdown(),
  };
}
