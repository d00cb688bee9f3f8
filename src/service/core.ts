import { FailedPreconditionError } from "../domain/errors.js";
import { awsOptionsOf, ProviderKind } from "../domain/spec.js";
import type { MigrationSpec } from "../gen/migration/v1/migration_pb.js";
import { LocalProvider } from "../providers/local/local-provider.js";
import type { Provider } from "../providers/provider.js";
import { forgetStreamsOf } from "../routing/proxy-liveness.js";
import { StoreRoutes } from "../routing/router.js";
import { XdsRouter } from "../routing/xds-router.js";
import { openGuard, type Guard } from "../security/guard.js";
import type { ServiceConfig } from "../config.js";
import { EventBus } from "../store/event-bus.js";
import { Leases } from "../store/leases.js";
import { MigrationRepo } from "../store/migration-repo.js";
import { claimIdentity, dataDirIdentity } from "../store/service-identity.js";
import { openStore, type Store } from "../store/store.js";
import { DeferredMetrics } from "../telemetry/deferred-metrics.js";
import type { Logger } from "../telemetry/log.js";
import { DeferredTracing } from "../telemetry/tracing.js";

/** What every part of the service stands on: the security guard, the store and what it coordinates, the providers. */
export interface Core {
  guard: Guard;
  store: Store;
  bus: EventBus;
  repo: MigrationRepo;
  providers: (spec: MigrationSpec) => Provider;
  /** Why a provider kind cannot be used here, if it cannot. */
  providerAvailable: (kind: ProviderKind) => string | undefined;
  identity: Awaited<ReturnType<typeof claimIdentity>>;
  routes: StoreRoutes;
  router: XdsRouter;
  leases: Leases;
  metrics: DeferredMetrics;
  tracing: DeferredTracing;
  /** Aborted when the service stops: long-lived calls end with it. */
  shutdown: AbortController;
}

/** Opens the guard and the store, claims this replica's identity and takes back what a dead incarnation held. */
export async function openCore(
  config: ServiceConfig,
  log: Logger,
  effects?: Pick<Core, "providers" | "providerAvailable">,
): Promise<Core> {
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
      { policy: config.security.policyFile ?? "none: every caller may do everything" },
    );
  }
  const store = await openStore({ databaseUrl: config.databaseUrl, dataDir: config.dataDir });
  log.info("state store ready", { embedded: Boolean(store.embedded), port: store.embedded?.port });
  const bus = new EventBus(store.connection);
  const repo = new MigrationRepo(store.db);
  const { providers, providerAvailable } = effects ?? (await openProviders(config));
  // Held for as long as this process lives: whatever leases carry this identity belong to a dead incarnation of it.
  // Two connections of their own, opened at once.
  const [identity] = await Promise.all([
    claimIdentity(store.connection, config.replicaId ?? dataDirIdentity(config.dataDir)),
    bus.start(),
  ]);
  if (!identity.preferred)
    log.warn("another live replica uses this identity (same data dir?); running under a fresh one", {
      replicaId: identity.id,
    });
  const routes = new StoreRoutes(store.db);
  const router = new XdsRouter(store.db, routes);
  const leases = new Leases(store.leaseDb, identity.id, config.leaseMs);
  // Before the engine runs, side by side: ROUTING must not wait for ACKs from the streams a dead incarnation held, and
  // a restart knows its own leases (taken back at once, with new fencing tokens, rather than waited out).
  const [, reclaimed] = await Promise.all([
    forgetStreamsOf(store.db, identity.id),
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
  return {
    guard,
    store,
    bus,
    repo,
    providers,
    providerAvailable,
    identity,
    routes,
    router,
    leases,
    metrics,
    tracing,
    shutdown: new AbortController(),
  };
}

async function openProviders(config: ServiceConfig): Promise<Pick<Core, "providers" | "providerAvailable">> {
  const local = new LocalProvider(config.localDir);
  // The AWS SDK is loaded only by a service configured for AWS.
  const aws = config.aws ? await (await import("../providers/aws/create.js")).createAwsProvider(config.aws) : undefined;
  return {
    providers: (spec) => {
      if (spec.provider === ProviderKind.LOCAL) return local;
      if (aws) return aws.configured(awsOptionsOf(spec));
      throw new FailedPreconditionError("PROVIDER_AWS is not configured on this service: start it with --aws-region");
    },
    providerAvailable: (kind) =>
      kind === ProviderKind.LOCAL || aws
        ? undefined
        : "PROVIDER_AWS is not configured on this service (start it with --aws-region); use PROVIDER_LOCAL",
  };
}
