import type { tracing as otelTracing } from "@opentelemetry/sdk-node";
import type { MetricReader } from "@opentelemetry/sdk-metrics";
import { Engine } from "./engine/driver.js";
import { RetirementKeeper } from "./engine/retirement-keeper.js";
import { Leases } from "./store/leases.js";
import { FailedPreconditionError } from "./domain/errors.js";
import { LocalProvider } from "./providers/local/local-provider.js";
import type { Provider } from "./providers/provider.js";
import { awsOptionsOf, ProviderKind } from "./domain/spec.js";
import type { MigrationSpec } from "./gen/migration/v1/migration_pb.js";
import { StoreRoutes } from "./routing/router.js";
import { forgetStreamsOf } from "./routing/proxy-liveness.js";
import { XdsRouter } from "./routing/xds-router.js";
import type { AdsServer } from "../xds/index.js";
import type { ServiceConfig } from "./config.js";
import { CdcWatchers } from "./store/cdc-watchers.js";
import { EventBus } from "./store/event-bus.js";
import { MigrationRepo } from "./store/migration-repo.js";
import { DatabaseRepo } from "./store/database-repo.js";
import { ownershipKey, sourceOf } from "./domain/inventory.js";
import { openStore } from "./store/store.js";
import { claimIdentity, dataDirIdentity } from "./store/service-identity.js";
import type { Logger } from "./telemetry/log.js";
import { DeferredMetrics } from "./telemetry/deferred-metrics.js";
import { DeferredTracing, NO_TRACING, tracesWanted } from "./telemetry/tracing.js";
import { openGuard } from "./security/guard.js";

/** Bounds that keep one client from starving the others or the engine. */
const LIMITS = {
  /** The largest request message, after decompression. */
  messageBytes: 4 * 1024 * 1024,
  streamsPerConnection: 100,
  xdsStreamsPerIdentity: 8,
};

export interface RunningService {
  port: number;
  xdsPort: number;
  /** Drains in-flight calls, then releases the store. Safe to call twice. */
  stop(): Promise<void>;
}

type SpanProcessor = otelTracing.SpanProcessor;

/** What tests (and embedders) may add to the telemetry: their own span processors and metric readers. */
export interface TelemetryHooks {
  spanProcessors?: SpanProcessor[];
  metricReaders?: MetricReader[];
}

/** Wires the store, the API and the standard gRPC services together and starts listening. */
export async function startService(
  config: ServiceConfig,
  log: Logger,
  hooks: TelemetryHooks = {},
): Promise<RunningService> {
  const guard = await openGuard({
    tls: config.security.mode === "mtls" ? config.security.tls : undefined,
    policyFile: config.security.policyFile,
    reloadMs: config.reloadMs,
    onReload: (what) => log.info("reloaded", { what }),
    onReloadError: (what, e) =>
      log.error("a changed file did not load; the last good one stays in force", { what, error: e.message }),
  });
  if (config.security.mode === "insecure") {
    log.warn(
      "running --insecure: the API and xDS ports speak cleartext and authenticate no one; use mutual TLS outside a trusted network",
      {
        policy: config.security.policyFile ?? "none: every caller may do everything",
      },
    );
  }
  const store = await openStore({ databaseUrl: config.databaseUrl, dataDir: config.dataDir });
  log.info("state store ready", { embedded: Boolean(store.embedded), port: store.embedded?.port });
  const bus = new EventBus(store.connection);
  const repo = new MigrationRepo(store.db);
  const shutdown = new AbortController();
  const local = new LocalProvider(config.localDir);
  // The AWS SDK is loaded only by a service configured for AWS.
  const aws = config.aws ? await (await import("./providers/aws/create.js")).createAwsProvider(config.aws) : undefined;
  const providers = (spec: MigrationSpec): Provider => {
    if (spec.provider === ProviderKind.LOCAL) return local;
    if (aws) return aws.configured(awsOptionsOf(spec));
    throw new FailedPreconditionError("PROVIDER_AWS is not configured on this service: start it with --aws-region");
  };
  const providerAvailable = (kind: ProviderKind) =>
    kind === ProviderKind.LOCAL || aws
      ? undefined
      : "PROVIDER_AWS is not configured on this service (start it with --aws-region); use PROVIDER_LOCAL";
  // Held for as long as this process lives: whatever leases carry this identity belong to a dead incarnation of it.
  // Two connections of their own, opened at once.
  const [identity] = await Promise.all([
    claimIdentity(store.connection, config.replicaId ?? dataDirIdentity(config.dataDir)),
    bus.start(),
  ]);
  const replicaId = identity.id;
  if (!identity.preferred)
    log.warn("another live replica uses this identity (same data dir?); running under a fresh one", { replicaId });
  const routes = new StoreRoutes(store.db);
  const router = new XdsRouter(store.db, routes);
  const leases = new Leases(store.leaseDb, replicaId, config.leaseMs);
  // Before the engine runs, side by side: ROUTING must not wait for ACKs from the streams a dead incarnation held, and
  // a restart knows its own leases (taken back at once, with new fencing tokens, rather than waited out).
  const [, reclaimed] = await Promise.all([
    forgetStreamsOf(store.db, replicaId),
    config.engine && identity.preferred ? leases.reclaim() : [],
  ]);
  if (reclaimed.length > 0) log.info("leases of a previous incarnation taken back", { leases: reclaimed });
  const metrics = new DeferredMetrics();
  const tracing = new DeferredTracing();
  // Counters and trace events from what the log records, as it commits.
  repo.onCommitted((events) => {
    metrics.events(events);
    for (const e of events) {
      const c =
        e.type === "CHECK_RESULT"
          ? (e.payload as { check?: { name: string; status: string; message: string } }).check
          : undefined;
      if (c) tracing.verdict(e.migration_id, { ...c, at: e.at });
    }
  });
  const engine = new Engine({
    metrics,
    tracing,
    repo,
    leases,
    fencedLeaseMs: config.fencedLeaseMs,
    baselineSampleMs: config.baselineSampleMs,
    providers,
    router,
    log: log.child({ component: "engine" }),
  });
  const keeper = new RetirementKeeper({
    repo,
    leases,
    providers,
    log: log.child({ component: "retirement" }),
    intervalMs: config.retirementCheckMs,
  });
  if (config.engine) keeper.start();
  if (config.engine) {
    // Before the xDS server, the API and metrics are even loaded (gRPC and protobufjs alone are a few hundred
    // milliseconds of CPU on a busy machine): a replica restarted inside a cutover's fenced window drives it first.
    // Its ROUTING step needs only the store: the routes it writes reach the proxies once the xDS server below serves.
    engine.start();
  }

  const [
    { AdsServer, listenXds, ResourceCache },
    { RouteSync },
    { ProxyStatusTracker },
    { xdsAdmission },
    { grpcMtlsCredentials },
  ] = await Promise.all([
    import("../xds/index.js"),
    import("./routing/route-sync.js"),
    import("./routing/proxy-status.js"),
    import("./routing/xds-admission.js"),
    import("./security/grpc-certificates.js"),
  ]);
  const cache = new ResourceCache();
  const ads: AdsServer = new AdsServer(cache, {
    admit: xdsAdmission({
      mtls: Boolean(guard.tls),
      policy: guard.policy,
      connected: () => ads.connected(),
      maxStreamsPerIdentity: LIMITS.xdsStreamsPerIdentity,
    }),
  });
  const sync = new RouteSync(routes, cache, bus, log.child({ component: "routing" }));
  await sync.start();
  const tracker = new ProxyStatusTracker(store.db, ads, sync, replicaId, log.child({ component: "routing" }));
  tracker.start();
  const xds = await listenXds(ads, config.host, config.xdsPort, guard.tls ? grpcMtlsCredentials(guard.tls) : undefined);
  log.info("xds listening", { port: xds.port });
  const watchers = new CdcWatchers(store.db, replicaId);
  // ACK latency: once per proxy and version, from the version reaching the cache.
  const ackedSeen = new WeakMap<object, Map<string, number>>();
  ads.on("ack", (s: object, typeUrl: string, version: number) => {
    const seen = ackedSeen.get(s) ?? new Map<string, number>();
    ackedSeen.set(s, seen);
    if ((seen.get(typeUrl) ?? 0) >= version) return;
    seen.set(typeUrl, version);
    const made = cache.versionMadeAt(version);
    metrics.xdsAck(typeUrl, made === undefined ? undefined : (performance.now() - made) / 1000);
  });
  ads.on("nack", (_s: object, typeUrl: string) => metrics.xdsNack(typeUrl));

  // What can wait does (two seconds at most): a replica restarted inside a cutover's fenced window first gets the
  // applications writing again. Measured in test/crash-window.test.ts.
  if (config.engine) await engine.windowClear(2_000);
  const [
    { listenApi },
    { migrationService },
    { cdcService },
    { healthService, HealthState },
    { reflectionServices },
    { rpcTelemetry },
    { inputGuard },
    { Authorizer },
    { Inventory },
    { callerLimits },
    gen,
    health,
    reflectionV1,
    reflectionV1Alpha,
  ] = await Promise.all([
    import("./api/server.js"),
    import("./api/migration-service.js"),
    import("./api/cdc-service.js"),
    import("./api/health.js"),
    import("./api/reflection.js"),
    import("./api/rpc-telemetry.js"),
    import("./api/input-guard.js"),
    import("./api/authorize.js"),
    import("./api/inventory.js"),
    import("./api/caller-limits.js"),
    import("./gen/migration/v1/migration_pb.js"),
    import("./gen/health/v1/health_pb.js"),
    import("./gen/grpc/reflection/v1/reflection_pb.js"),
    import("./gen/grpc/reflection/v1alpha/reflection_pb.js"),
  ]);
  const { MigrationService, CdcService } = gen;
  const { Health, HealthCheckResponse_ServingStatus: Status } = health;
  const healthState = new HealthState();
  const authz = new Authorizer(guard.policy);
  const inventory = new Inventory(
    new DatabaseRepo(store.db, (spec) => ownershipKey(...sourceOf(spec), config.aws?.region)),
    authz,
    config.aws?.region,
  );
  const reflection = reflectionServices([
    MigrationService,
    CdcService,
    Health,
    reflectionV1.ServerReflection,
    reflectionV1Alpha.ServerReflection,
  ]);
  const api = await listenApi(
    (r) => {
      r.service(
        MigrationService,
        migrationService({
          repo,
          bus,
          shutdown: shutdown.signal,
          providerAvailable,
          providers,
          router,
          watchers,
          authz,
          inventory,
        }),
      );
      r.service(CdcService, cdcService({ repo, bus, router, watchers, shutdown: shutdown.signal, authz }));
      r.service(Health, healthService(healthState));
      r.service(reflectionV1.ServerReflection, reflection.v1);
      r.service(reflectionV1Alpha.ServerReflection, reflection.v1alpha);
    },
    {
      host: config.host,
      port: config.port,
      tls: guard.tls,
      readMaxBytes: LIMITS.messageBytes,
      maxConcurrentStreams: LIMITS.streamsPerConnection,
      interceptors: [
        rpcTelemetry(() => (r) => metrics.rpc(r)),
        callerLimits({
          streams: config.maxStreamsPerIdentity,
          requestsPerSecond: config.maxRpsPerIdentity,
          burst: 2 * config.maxRpsPerIdentity,
        }),
        inputGuard(log.child({ component: "api" })),
      ],
    },
  );
  healthState.set("", Status.SERVING);
  healthState.set(MigrationService.typeName, Status.SERVING);
  healthState.set(CdcService.typeName, Status.SERVING);
  log.info("listening", { host: config.host, port: api.port });
  const { createMetrics } = await import("./telemetry/metrics.js");
  metrics.attach(
    createMetrics({
      port: config.metricsPort,
      host: config.metricsHost,
      proxiesBehind: () => router.behindCounts(),
      snapshot: () => repo.telemetrySnapshot(),
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
    const { createOtelTracing } = await import("./telemetry/otel-tracing.js");
    tracing.attach(createOtelTracing({ processors: hooks.spanProcessors }));
  } else tracing.attach(NO_TRACING);
  if (config.metricsPort)
    log.info("metrics listening", { host: config.metricsHost, port: config.metricsPort, path: "/metrics" });

  let stopping: Promise<void> | undefined;
  return {
    port: api.port,
    xdsPort: xds.port,
    stop() {
      stopping ??= (async () => {
        log.info("draining", { drainMs: config.drainMs });
        healthState.shutdown();
        shutdown.abort();
        await engine.stop();
        await keeper.stop();
        await api.close(config.drainMs);
        await tracker.stop();
        ads.close();
        await xds.close();
        await sync.close();
        await bus.close();
        await identity.close();
        await store.close();
        guard.close();
        await metrics.shutdown().catch(() => {});
        await tracing.shutdown().catch(() => {});
        log.info("stopped");
      })();
      return stopping;
    },
  };
}
