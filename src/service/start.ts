import type { ServiceConfig } from "../config.js";
import type { Logger } from "../telemetry/log.js";
import type { Activities } from "../engine/step-env.js";
import { openCore, type Core } from "./core.js";
import { startDrivers } from "./drive.js";
import type { TelemetryHooks } from "./telemetry.js";

export type { TelemetryHooks } from "./telemetry.js";

/**
 * What the service does to instances, when not the real thing: bench:fleet drives hundreds of migrations on an
 * in-memory provider this way, with the real store, engine, campaigns and API.
 */
export interface Effects {
  providers?: Pick<Core, "providers" | "providerAvailable">;
  activities?: Activities;
}

export interface RunningService {
  port: number;
  xdsPort: number;
  /** Drains in-flight calls, then releases the store. Safe to call twice. */
  stop(): Promise<void>;
}

/**
 * Starts the service in the order a replica restarted inside a cutover's fenced window needs: the store and the
 * engine first, then the xDS server (the proxies get the routes the engine wrote), then, once nothing it drives is
 * in the window (two seconds at most, measured in test/crash-window.test.ts), the API and the telemetry. Each later
 * part is loaded only when its turn comes.
 */
export async function startService(
  config: ServiceConfig,
  log: Logger,
  hooks: TelemetryHooks = {},
  effects: Effects = {},
): Promise<RunningService> {
  const core = await openCore(config, log, effects.providers);
  const { engine, keeper, campaigns, notifier } = startDrivers(core, config, log, effects.activities);
  const { startXdsPlane } = await import("./xds-plane.js");
  const xds = await startXdsPlane(core, config, log);
  if (config.engine) await engine.windowClear(2_000);
  const [{ startApiPlane }, { attachTelemetry }] = await Promise.all([
    import("./api-plane.js"),
    import("./telemetry.js"),
  ]);
  const api = await startApiPlane(core, config, log);
  await attachTelemetry(core, xds.ads, config, log, hooks);

  let stopping: Promise<void> | undefined;
  return {
    port: api.port,
    xdsPort: xds.port,
    stop() {
      stopping ??= (async () => {
        log.info("draining", { drainMs: config.drainMs });
        api.notServing();
        core.shutdown.abort();
        await engine.stop();
        await keeper.stop();
        await campaigns.stop();
        await notifier.stop();
        await api.close(config.drainMs);
        await xds.close();
        await core.bus.close();
        await core.identity.close();
        await core.store.close();
        core.guard.close();
        await core.metrics.shutdown().catch(() => {});
        await core.tracing.shutdown().catch(() => {});
        log.info("stopped");
      })();
      return stopping;
    },
  };
}
