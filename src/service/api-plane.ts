import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Authorizer } from "../api/authorize.js";
import { callerLimits } from "../api/caller-limits.js";
import { campaignService } from "../api/campaign-service.js";
import { cdcService } from "../api/cdc-service.js";
import { HealthState, healthService } from "../api/health.js";
import { inputGuard } from "../api/input-guard.js";
import { Inventory } from "../api/inventory.js";
import { migrationService } from "../api/migration-service.js";
import { reflectionServices } from "../api/reflection.js";
import { rpcTelemetry } from "../api/rpc-telemetry.js";
import { listenApi } from "../api/server.js";
import type { ServiceConfig } from "../config.js";
import { ownershipKey, sourceOf } from "../domain/inventory.js";
import { ServerReflection as ReflectionV1 } from "../gen/grpc/reflection/v1/reflection_pb.js";
import { ServerReflection as ReflectionV1Alpha } from "../gen/grpc/reflection/v1alpha/reflection_pb.js";
import { Health, HealthCheckResponse_ServingStatus as Status } from "../gen/health/v1/health_pb.js";
import { CdcService, MigrationService } from "../gen/migration/v1/migration_pb.js";
import { CampaignService } from "../gen/migration/v1/campaign_pb.js";
import { CampaignRepo } from "../store/campaign-repo.js";
import { CdcWatchers } from "../store/cdc-watchers.js";
import { DatabaseRepo } from "../store/database-repo.js";
import type { Logger } from "../telemetry/log.js";
import type { Core } from "./core.js";

/**
 * Where the web console's built files are: beside the bundle (dist/web next to dist/pgshift.mjs), or, run from the
 * sources, in dist/web of the checkout. None: the API serves no pages (build them with npm run build).
 */
function consoleDir(): string | undefined {
  const here = dirname(fileURLToPath(import.meta.url));
  return [join(here, "web"), join(here, "../../dist/web")].find((d) => existsSync(join(d, "index.html")));
}

/** Bounds that keep one client from starving the others or the engine. */
const LIMITS = {
  /** The largest request message, after decompression. */
  messageBytes: 4 * 1024 * 1024,
  streamsPerConnection: 100,
};

export interface ApiPlane {
  port: number;
  /** Tells health checkers the service is going: the first thing a stop does. */
  notServing(): void;
  /** Drains in-flight calls for up to drainMs, then closes the port. */
  close(drainMs: number): Promise<void>;
}

/** The gRPC and Connect API (migrations, CDC, inventory), with health and reflection, behind the guard's limits. */
export async function startApiPlane(core: Core, config: ServiceConfig, log: Logger): Promise<ApiPlane> {
  const { repo, bus, router, metrics, guard } = core;
  const healthState = new HealthState();
  const databases = new DatabaseRepo(core.store.db, (spec) => ownershipKey(...sourceOf(spec), config.aws?.region));
  // Grants may name teams: the inventory says whose each database is.
  const authz = new Authorizer(guard.policy, (names) => databases.teamsOf(names));
  const inventory = new Inventory(databases, authz, config.aws?.region);
  const watchers = new CdcWatchers(core.store.db, core.identity.id);
  const shutdown = core.shutdown.signal;
  const reflection = reflectionServices([
    MigrationService,
    CampaignService,
    CdcService,
    Health,
    ReflectionV1,
    ReflectionV1Alpha,
  ]);
  const web = consoleDir();
  const api = await listenApi(
    (r) => {
      r.service(
        MigrationService,
        migrationService({
          repo,
          bus,
          shutdown,
          providerAvailable: core.providerAvailable,
          providers: core.providers,
          router,
          watchers,
          authz,
          inventory,
        }),
      );
      r.service(
        CampaignService,
        campaignService({
          campaigns: new CampaignRepo(core.store.db),
          databases,
          authz,
          bus,
          providerAvailable: core.providerAvailable,
          defaultRegion: config.aws?.region,
          shutdown,
        }),
      );
      r.service(CdcService, cdcService({ repo, bus, router, watchers, shutdown, authz }));
      r.service(Health, healthService(healthState));
      r.service(ReflectionV1, reflection.v1);
      r.service(ReflectionV1Alpha, reflection.v1alpha);
    },
    {
      host: config.host,
      port: config.port,
      tls: guard.tls,
      readMaxBytes: LIMITS.messageBytes,
      maxConcurrentStreams: LIMITS.streamsPerConnection,
      consoleDir: web,
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
  for (const name of ["", MigrationService.typeName, CampaignService.typeName, CdcService.typeName])
    healthState.set(name, Status.SERVING);
  log.info("listening", {
    host: config.host,
    port: api.port,
    console: web ? `http://${config.host}:${api.port}/` : "not built",
  });
  return {
    port: api.port,
    notServing: () => healthState.shutdown(),
    close: (drainMs) => api.close(drainMs),
  };
}
