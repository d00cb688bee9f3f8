import {
  context,
  ROOT_CONTEXT,
  SpanStatusCode,
  trace,
  TraceFlags,
  type Context,
  type Link,
  type Span,
} from "@opentelemetry/api";
import { NodeSDK, tracing } from "@opentelemetry/sdk-node";
import { CUTOVER_WINDOW } from "../domain/transitions.js";
import { migrationSpanId, migrationTraceId } from "./trace-ids.js";
import { tracesWanted, type Attempt, type MigrationTracing, type PhaseEnd, type SpanAttributes } from "./tracing.js";

/** Random ids, except for the one span the tracer is about to start with an id we derived. */
class DerivedIds implements tracing.IdGenerator {
  private readonly random = new tracing.RandomIdGenerator();
  next: { traceId?: string; spanId?: string } = {};
  generateTraceId(): string {
    return this.next.traceId ?? this.random.generateTraceId();
  }
  generateSpanId(): string {
    return this.next.spanId ?? this.random.generateSpanId();
  }
}

/**
 * OpenTelemetry's Node SDK with the migration spans. Exports where the OTel environment says (OTLP when
 * OTEL_EXPORTER_OTLP_ENDPOINT is set); with `processors` (tests: an in-memory exporter) to those instead.
 * Without either it records nothing.
 */
export function createOtelTracing(opts: { processors?: tracing.SpanProcessor[] } = {}): MigrationTracing {
  const ids = new DerivedIds();
  const processors = opts.processors ?? (tracesWanted() ? undefined : []);
  const sdk = new NodeSDK({
    serviceName: process.env.OTEL_SERVICE_NAME ?? "pgshift",
    idGenerator: ids,
    spanProcessors: processors,
    // Metrics are served to Prometheus by the service itself; OTLP metrics and logs only when the environment names them
    // (the SDK's own default would export both to localhost:4318 unasked).
    metricReaders: process.env.OTEL_METRICS_EXPORTER ? undefined : [],
    logRecordProcessors: process.env.OTEL_LOGS_EXPORTER ? undefined : [],
    instrumentations: [],
  });
  sdk.start();
  const tracer = trace.getTracer("pgshift");
  const pendingVerdicts = new Map<string, { attrs: SpanAttributes; at: Date }[]>();

  const parent = (traceId: string, spanId: string): Context =>
    trace.setSpanContext(ROOT_CONTEXT, { traceId, spanId, traceFlags: TraceFlags.SAMPLED, isRemote: true });

  /** Starts a span whose id (and, for a root, trace id) we derived, so that other replicas and logs can name it. */
  const startDerived = (
    name: string,
    o: { traceId: string; spanId: string; parentId?: string; start: Date; attrs: SpanAttributes; links?: Link[] },
  ): Span => {
    ids.next = { traceId: o.parentId ? undefined : o.traceId, spanId: o.spanId };
    try {
      return tracer.startSpan(
        name,
        { startTime: o.start, attributes: o.attrs, links: o.links },
        o.parentId ? parent(o.traceId, o.parentId) : ROOT_CONTEXT,
      );
    } finally {
      ids.next = {};
    }
  };

  return {
    phaseEnded(p: PhaseEnd) {
      const traceId = migrationTraceId(p.migrationId);
      const rootId = migrationSpanId(p.migrationId, "root");
      const inWindow = CUTOVER_WINDOW.includes(p.from) && p.cutover;
      const cutoverId = inWindow ? migrationSpanId(p.migrationId, "cutover", p.cutover!.startedAt) : undefined;
      const span = startDerived(`phase ${p.from}`, {
        traceId,
        spanId: migrationSpanId(p.migrationId, "phase", p.from, p.enteredAt),
        parentId: cutoverId ?? rootId,
        start: new Date(p.enteredAt),
        attrs: {
          ...p.attrs,
          "pgshift.phase": p.from,
          "pgshift.next_phase": p.to,
          "pgshift.outcome": p.outcome,
          "pgshift.reason": p.reason.slice(0, 500),
        },
      });
      for (const v of pendingVerdicts.get(p.migrationId) ?? []) span.addEvent("check", v.attrs, v.at);
      pendingVerdicts.delete(p.migrationId);
      if (p.outcome === "failed") span.setStatus({ code: SpanStatusCode.ERROR, message: p.reason.slice(0, 500) });
      span.end(p.at);
      // The window closed with this move: the cutover span, parent of the phases inside it.
      if (inWindow && p.cutover!.endedAt === p.at.toISOString()) {
        const c = startDerived("cutover", {
          traceId,
          spanId: cutoverId!,
          parentId: rootId,
          start: new Date(p.cutover!.startedAt),
          attrs: {
            ...p.attrs,
            "pgshift.cutover.window_ms": p.cutover!.windowMs ?? 0,
            "pgshift.outcome": p.cutover!.outcome ?? "",
          },
        });
        c.end(p.at);
      }
      if (p.terminal) {
        const root = startDerived(`migration ${String(p.attrs["pgshift.database"] ?? "")}`, {
          traceId,
          spanId: rootId,
          start: p.createdAt,
          attrs: { ...p.attrs, "pgshift.final_phase": p.to },
        });
        if (p.to === "FAILED") root.setStatus({ code: SpanStatusCode.ERROR, message: p.reason.slice(0, 500) });
        root.end(p.at);
      }
    },

    attempt(a: Attempt, fn) {
      const traceId = migrationTraceId(a.migrationId);
      const ctx = parent(traceId, migrationSpanId(a.migrationId, "phase", a.phase, a.enteredAt));
      const links = (a.links ?? []).map((l) => ({
        context: { traceId: l.traceId, spanId: l.spanId, traceFlags: TraceFlags.SAMPLED, isRemote: true },
      }));
      return tracer.startActiveSpan(
        a.name,
        { attributes: { ...a.attrs, "pgshift.phase": a.phase, "pgshift.attempt": a.attempt }, links },
        ctx,
        async (span) => {
          try {
            const out = await fn();
            // A step's outcome: the phase it moves to, or that it waits.
            const o = out as { to?: string; waitMs?: number } | undefined;
            span.setAttribute("pgshift.outcome", o?.to ? `to ${o.to}` : o?.waitMs !== undefined ? "waiting" : "done");
            return out;
          } catch (e) {
            span.setAttribute("pgshift.outcome", "failed");
            span.recordException(e instanceof Error ? e : String(e));
            span.setStatus({
              code: SpanStatusCode.ERROR,
              message: e instanceof Error ? e.message.slice(0, 500) : String(e),
            });
            throw e;
          } finally {
            span.end();
          }
        },
      );
    },

    span(name, attrs, fn) {
      if (!trace.getActiveSpan()) return fn();
      return tracer.startActiveSpan(name, { attributes: attrs }, async (span) => {
        try {
          return await fn();
        } catch (e) {
          span.setStatus({
            code: SpanStatusCode.ERROR,
            message: e instanceof Error ? e.message.slice(0, 500) : String(e),
          });
          throw e;
        } finally {
          span.end();
        }
      });
    },

    verdict(migrationId, v) {
      const attrs = {
        "pgshift.check": v.name,
        "pgshift.check.status": v.status,
        "pgshift.check.message": v.message.slice(0, 500),
      };
      const span = trace.getActiveSpan();
      if (span?.isRecording()) return void span.addEvent("check", attrs, v.at);
      const list = pendingVerdicts.get(migrationId) ?? [];
      // Bounded: a migration whose phase never ends here (driven elsewhere) keeps only its latest verdicts.
      if (list.length < 100) list.push({ attrs, at: v.at });
      pendingVerdicts.set(migrationId, list);
    },

    active() {
      const s = trace.getSpan(context.active())?.spanContext();
      return s && trace.isSpanContextValid(s) ? { traceId: s.traceId, spanId: s.spanId } : undefined;
    },

    shutdown: () => sdk.shutdown(),
  };
}
