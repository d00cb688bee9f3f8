import type { CutoverTimingJson } from "../domain/state.js";
import type { PhaseName } from "../domain/phases.js";

export type SpanAttributes = Record<string, string | number | boolean>;

/** A phase that just ended, as the engine's transition recorded it. */
export interface PhaseEnd {
  migrationId: string;
  /** Attributes every span of the migration carries: database, provider, source, target. */
  attrs: SpanAttributes;
  from: PhaseName;
  to: PhaseName;
  reason: string;
  /** When `from` was entered: the ISO text the state holds, which names its span. */
  enteredAt: string;
  at: Date;
  /** When the migration was created: the start of its root span. */
  createdAt: Date;
  /** The cutover's timing after this transition. */
  cutover?: CutoverTimingJson;
  /** The outcome label of the transition (advanced, fell_back, rolled_back, failed, aborted). */
  outcome: string;
  /** Whether `to` ends the migration (its root span then ends too). */
  terminal: boolean;
}

/** One attempt at a phase's step (or an operator's action), as a live span under the phase's. */
export interface Attempt {
  migrationId: string;
  attrs: SpanAttributes;
  phase: PhaseName;
  enteredAt: string;
  name: string;
  attempt: number;
  /** Span contexts to link to: the API call that triggered this step. */
  links?: { traceId: string; spanId: string }[];
}

/**
 * The traces of migrations: one trace per migration (its id derived from the migration's), a span per phase
 * and per step attempt, the cutover's parts as children. Phases are recorded when they end (their spans then
 * carry the times the store holds), so a phase begun by one replica and ended by another is one span.
 */
export interface MigrationTracing {
  phaseEnded(p: PhaseEnd): void;
  /** Runs `fn` inside the attempt's span; spans made inside it (`span`) are its children. */
  attempt<T>(a: Attempt, fn: () => Promise<T>): Promise<T>;
  /** A part of the step under way (fence, promote, route…), as a child of the active span. */
  span<T>(name: string, attrs: SpanAttributes, fn: () => Promise<T>): Promise<T>;
  /**
   * A check's verdict, as an event on the active span; one logged outside any (with the transition that ends a
   * phase) goes on that phase's span when it ends.
   */
  verdict(migrationId: string, v: { name: string; status: string; message: string; at: Date }): void;
  /** The active span's ids (for logs and for API calls to record), if any. */
  active(): { traceId: string; spanId: string } | undefined;
  shutdown(): Promise<void>;
}

/** Whether the environment asks for traces to be exported (OpenTelemetry's variables). */
export function tracesWanted(env: NodeJS.ProcessEnv = process.env): boolean {
  const exporters = (env.OTEL_TRACES_EXPORTER ?? "").split(",").map((s) => s.trim());
  if (exporters.includes("none") || env.OTEL_SDK_DISABLED === "true") return false;
  return Boolean(
    env.OTEL_EXPORTER_OTLP_ENDPOINT ||
    env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ||
    exporters.some((e) => e && e !== "otlp"),
  );
}

export const NO_TRACING: MigrationTracing = {
  phaseEnded: () => {},
  attempt: (_a, fn) => fn(),
  span: (_n, _a, fn) => fn(),
  verdict: () => {},
  active: () => undefined,
  shutdown: async () => {},
};

/**
 * Tracing for an engine that starts before OpenTelemetry is loaded (a replica restarted inside a cutover drives
 * it first): ended phases are kept and recorded once attached; live spans before that are not made.
 */
export class DeferredTracing implements MigrationTracing {
  private impl: MigrationTracing | undefined;
  private pending: PhaseEnd[] = [];

  attach(impl: MigrationTracing): void {
    this.impl = impl;
    for (const p of this.pending) impl.phaseEnded(p);
    this.pending = [];
  }

  phaseEnded(p: PhaseEnd): void {
    if (this.impl) this.impl.phaseEnded(p);
    else this.pending.push(p);
  }

  attempt<T>(a: Attempt, fn: () => Promise<T>): Promise<T> {
    return (this.impl ?? NO_TRACING).attempt(a, fn);
  }

  span<T>(name: string, attrs: SpanAttributes, fn: () => Promise<T>): Promise<T> {
    return (this.impl ?? NO_TRACING).span(name, attrs, fn);
  }

  verdict(migrationId: string, v: { name: string; status: string; message: string; at: Date }): void {
    this.impl?.verdict(migrationId, v);
  }

  active(): { traceId: string; spanId: string } | undefined {
    return this.impl?.active();
  }

  async shutdown(): Promise<void> {
    await this.impl?.shutdown();
  }
}
