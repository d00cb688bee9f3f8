import { check } from "../domain/check.js";
import { retirementOf, sourceRef, specFromJson } from "../domain/spec.js";
import type { SpecJson } from "../domain/state.js";
import type { MigrationSpec } from "../gen/migration/v1/migration_pb.js";
import type { Provider } from "../providers/provider.js";
import type { Leases } from "../store/leases.js";
import type { MigrationRepo } from "../store/migration-repo.js";
import type { Logger } from "../telemetry/log.js";

export interface RetirementKeeperDeps {
  repo: MigrationRepo;
  leases: Leases;
  providers: (spec: MigrationSpec) => Provider;
  log: Logger;
  /** How often the retired sources are looked at (an hour by default; AWS restarts a stopped instance after 7 days). */
  intervalMs: number;
}

const LEASE = "pgshift:retirement-keeper";

/**
 * Keeps the sources of finalized migrations retired: AWS starts an instance stopped for 7 days by itself, and an
 * old source serving again, unannounced, on day 8 is the surprise finalize must not leave behind. One replica at a
 * time (a lease) looks; whatever it finds running it stops again and records on the migration (check
 * retirement.source), so the operator sees it happened.
 */
export class RetirementKeeper {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;

  constructor(private readonly deps: RetirementKeeperDeps) {}

  start(): void {
    this.timer = setInterval(
      () => void (this.running ??= this.tick().finally(() => (this.running = undefined))),
      this.deps.intervalMs,
    );
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.running;
  }

  /** One look at every finalized migration's source that was stopped, not deleted. */
  async tick(): Promise<void> {
    const { repo, leases, providers, log } = this.deps;
    const lease = await leases.acquire(LEASE, Math.max(this.deps.intervalMs * 2, leases.ttlMs)).catch(() => undefined);
    if (!lease) return;
    let pageToken: string | undefined;
    do {
      const page = await repo.list({ phases: ["FINALIZED"], pageSize: 200, pageToken });
      for (const row of page.rows) {
        const spec = specFromJson(row.spec as SpecJson);
        if (retirementOf(spec) !== "stop") continue;
        try {
          const said = await providers(spec).keepRetired(sourceRef(spec));
          if (!said) continue;
          log.warn("a retired source was running again; stopped it again", {
            migration: row.id,
            source: spec.source?.id,
          });
          await repo.logCheck(
            row.id,
            "pgshift",
            check("retirement.source", "WARN", {
              measured: said,
              threshold: "a finalized migration's source stays stopped",
              message:
                "the old source was running again (AWS starts an instance stopped for 7 days); pgshift stopped it again",
              remedy:
                "nothing to do; to end this for good, delete the instance once its final snapshot is no longer needed (or migrate with source_retirement = SOURCE_RETIREMENT_DELETE)",
            }),
          );
        } catch (e) {
          // Retried on the next look; said now, never swallowed.
          log.error("could not keep a retired source stopped; will look again", {
            migration: row.id,
            error: (e as Error).message,
          });
        }
      }
      pageToken = page.nextPageToken || undefined;
    } while (pageToken);
  }
}
