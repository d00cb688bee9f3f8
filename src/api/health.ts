import { EventEmitter } from "node:events";
import type { ServiceImpl } from "@connectrpc/connect";
import { NotFoundError } from "../domain/errors.js";
import { type Health, HealthCheckResponse_ServingStatus as Status } from "../gen/health/v1/health_pb.js";

/**
 * The serving status the standard grpc.health.v1 service reports: "" is the
 * server as a whole, other keys are fully qualified service names.
 */
export class HealthState {
  private readonly statuses = new Map<string, Status>();
  private readonly changes = new EventEmitter();

  constructor() {
    this.changes.setMaxListeners(0);
  }

  set(service: string, status: Status): void {
    if (this.statuses.get(service) === status) return;
    this.statuses.set(service, status);
    this.changes.emit("change", service);
  }

  /** Marks every service NOT_SERVING, as a server about to drain does. */
  shutdown(): void {
    for (const s of this.statuses.keys()) this.set(s, Status.NOT_SERVING);
  }

  get(service: string): Status | undefined {
    return this.statuses.get(service);
  }

  all(): Map<string, Status> {
    return new Map(this.statuses);
  }

  onChange(fn: (service: string) => void): () => void {
    this.changes.on("change", fn);
    return () => this.changes.off("change", fn);
  }
}

export function healthService(state: HealthState): ServiceImpl<typeof Health> {
  return {
    check(req) {
      const status = state.get(req.service);
      if (status === undefined)
        throw new NotFoundError(`unknown service "${req.service}"; use "" for the server as a whole`);
      return { status };
    },
    async *watch(req, ctx) {
      let last: Status | undefined;
      let wake: (() => void) | undefined;
      const off = state.onChange((s) => {
        if (s === req.service) wake?.();
      });
      const onAbort = () => wake?.();
      ctx.signal.addEventListener("abort", onAbort);
      try {
        while (!ctx.signal.aborted) {
          const status = state.get(req.service) ?? Status.SERVICE_UNKNOWN;
          if (status !== last) {
            last = status;
            yield { status };
          }
          await new Promise<void>((resolve) => (wake = resolve));
        }
      } finally {
        off();
        ctx.signal.removeEventListener("abort", onAbort);
      }
    },
    list() {
      return {
        statuses: Object.fromEntries([...state.all()].map(([name, status]) => [name, { status }])),
      };
    },
  };
}
