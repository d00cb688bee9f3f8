import type { CommittedEvent, ServiceMetrics } from "./metrics.js";

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

  cdcTracked(migrationId: string, databaseName: string): void {
    this.call((m) => m.cdcTracked(migrationId, databaseName));
  }

  phaseEnded(phase: string, outcome: string, seconds: number): void {
    this.call((m) => m.phaseEnded(phase, outcome, seconds));
  }

  cutoverEnded(outcome: string, seconds: number): void {
    this.call((m) => m.cutoverEnded(outcome, seconds));
  }

  events(events: CommittedEvent[]): void {
    this.call((m) => m.events(events));
  }

  xdsAck(typeUrl: string, seconds: number | undefined): void {
    this.call((m) => m.xdsAck(typeUrl, seconds));
  }

  xdsNack(typeUrl: string): void {
    this.call((m) => m.xdsNack(typeUrl));
  }

  rpc(r: { service: string; method: string; code: string; seconds: number }): void {
    this.call((m) => m.rpc(r));
  }

  async shutdown(): Promise<void> {
    await this.impl?.shutdown();
  }
}
