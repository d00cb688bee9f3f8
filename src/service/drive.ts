import type { ServiceConfig } from "../config.js";
import { Engine } from "../engine/driver.js";
import type { Activities } from "../engine/step-env.js";
import { RetirementKeeper } from "../engine/retirement-keeper.js";
import { CampaignRunner } from "../engine/campaign-runner.js";
import { CampaignRepo } from "../store/campaign-repo.js";
import { NotificationRepo } from "../store/notification-repo.js";
import { loadHooks } from "../notify/hooks-file.js";
import { Notifier } from "../notify/notifier.js";
import type { Logger } from "../telemetry/log.js";
import type { Core } from "./core.js";

export interface Drivers {
  engine: Engine;
  keeper: RetirementKeeper;
  campaigns: CampaignRunner;
  notifier: Notifier;
}

/** How often a replica looks at the campaigns besides the wake-ups their migrations' events give. */
const CAMPAIGN_LOOK_MS = 1000;

/**
 * The engine and the retirement keeper, started at once when this replica drives migrations: before the xDS server,
 * the API and metrics are even loaded (gRPC and protobufjs alone are a few hundred milliseconds of CPU on a busy
 * machine), so a replica restarted inside a cutover's fenced window drives it first. Its ROUTING step needs only the
 * store: the routes it writes reach the proxies once the xDS server serves.
 */
export function startDrivers(core: Core, config: ServiceConfig, log: Logger, activities?: Activities): Drivers {
  const engine = new Engine({
    metrics: core.metrics,
    tracing: core.tracing,
    repo: core.repo,
    leases: core.leases,
    fencedLeaseMs: config.fencedLeaseMs,
    baselineSampleMs: config.baselineSampleMs,
    providers: core.providers,
    router: core.router,
    activities,
    log: log.child({ component: "engine" }),
  });
  const keeper = new RetirementKeeper({
    repo: core.repo,
    leases: core.leases,
    providers: core.providers,
    log: log.child({ component: "retirement" }),
    intervalMs: config.retirementCheckMs,
  });
  const campaigns = new CampaignRunner({
    campaigns: new CampaignRepo(core.store.db),
    repo: core.repo,
    providers: core.providers,
    leases: core.leases,
    bus: core.bus,
    log: log.child({ component: "campaigns" }),
    intervalMs: CAMPAIGN_LOOK_MS,
  });
  // Read once at start; a mistake in it stops the start with what to fix.
  const hooks = config.notifyFile ? loadHooks(config.notifyFile) : {};
  const notifier = new Notifier({
    notifications: new NotificationRepo(core.store.db),
    campaigns: new CampaignRepo(core.store.db),
    leases: core.leases,
    bus: core.bus,
    hooks: () => hooks,
    log: log.child({ component: "notifier" }),
    intervalMs: CAMPAIGN_LOOK_MS,
  });
  if (config.engine) {
    keeper.start();
    engine.start();
    campaigns.start();
    notifier.start();
  }
  return { engine, keeper, campaigns, notifier };
}
