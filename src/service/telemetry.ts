import type { tracing as otelTracing } from "@opentelemetry/sdk-node";
import type { MetricReader } from "@opentelemetry/sdk-metrics";
import type { AdsServer } from "../../xds/index.js";
import type { ServiceConfig } from "../config.js";
import type { Logger } from "../telemetry/log.js";
import { NO_TRACING, tracesWanted } from "../telemetry/tracing.js";
import type { Core } from "./core.js";

/** What tests (and embedders) may add to the telemetry: their own span processors and metric readers. */
export interface TelemetryHooks {
  spanProcessors?: otelTracing.SpanProcessor[];
  metricReaders?: MetricReader[];
}

/**
 * Attaches the Prometheus endpoint and, when traces are exported anywhere, OpenTelemetry's SDK to the deferred
 * metrics and tracing the core has recorded into since it opened: they load last, after everything that serves.
 */
export async function attachTelemetry(
  core: Core,
  ads: AdsServer,
  config: ServiceConfig,
  log: Logger,
  hooks: TelemetryHooks,
): Promise<void> {
  const { createMetrics } = await import("../telemetry/metrics.js");
  core.metrics.attach(
    createMetrics({
      port: config.metricsPort,
      host: config.metricsHost,
      proxiesBehind: () => core.router.behindCounts(),
      snapshot: () => core.repo.telemetrySnapshot(),
      connectedProxies: () => ads.connected().length,
      readers: hooks.metricReaders,
      onError: (e) =>
        log.error("metrics endpoint failed; the service goes on without it", {
          port: config.metricsPort,
          error: e.message,
        }),
    }),
  );
  // OpenTelemetry's SDK is loaded only to export somewhere: a replica restarted inside a cutover spends no CPU on it otherwise.
  if (hooks.spanProcessors || tracesWanted()) {
    const { createOtelTracing } = await import("../telemetry/otel-tracing.js");
    core.tracing.attach(createOtelTracing({ processors: hooks.spanProcessors }));
  } else core.tracing.attach(NO_TRACING);
  if (config.metricsPort)
    log.info("metrics listening", { host: config.metricsHost, port: config.metricsPort, path: "/metrics" });
}
