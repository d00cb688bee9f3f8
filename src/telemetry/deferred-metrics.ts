import type { ServiceMetrics } from "./metrics.js";

/**
 * Metrics for a service that starts its engine before OpenTelemetry is
 * loaded (a replica restarted inside a cutover must drive it first): calls
 * made before `attach` are kept and replayed, in order, once it is.
 */
export class DeferredMetrics implements ServiceMetrics {
  private impl: ServiceMetrics | undefined;
  private pending: Array<(m: ServiceMetrics) => void> = [];

  attach(impl: ServiceMetrics): void {
    this.impl = impl;
    for (const call of this.pending) call(impl);
    this.pending = [];
  }

  private call(fn: (m: ServiceMetrics) => void): void {
    if (this.impl) fn(this.impl);
    else this.pending.push(fn);
  }

  cdcPauseAlert(migrationId: string, databaseName: string): void {
    this.call((m) => m.cdcPauseAlert(migrationId, databaseName));
  }

  cdcPaused(migrationId: string, databaseName: string, since: Date | undefined): void {
    this.call((m) => m.cdcPaused(migrationId, databaseName, since));
  }

  cdcRetainedWal(migrationId: string, databaseName: string, bytes: Map<string, number>): void {
    this.call((m) => m.cdcRetainedWal(migrationId, databaseName, bytes));
  }

  reverse(migrationId: string, databaseName: string, r: { lagBytes: number; retainedBytes: number; drainEstimateSeconds?: number } | undefined): void {
    this.call((m) => m.reverse(migrationId, databaseName, r));
  }

  async shutdown(): Promise<void> {
    await this.impl?.shutdown();
  }
}
