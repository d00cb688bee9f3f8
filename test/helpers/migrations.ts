import { expect } from "vitest";
import { grpc, unary, type AnyClient } from "./grpc-clients.js";

/** Waits, by watching the real stream, until the migration reaches one of the phases; returns every event seen. */
export function waitForPhase(
  client: AnyClient,
  id: string,
  phases: string[],
  timeoutMs = 90_000,
): Promise<{ phase: string; events: any[] }> {
  return new Promise((resolve, reject) => {
    const events: any[] = [];
    const stream = client.WatchMigration({ id, after_sequence: 0 });
    const timer = setTimeout(() => {
      stream.cancel();
      reject(
        new Error(
          `migration ${id} did not reach ${phases.join("/")} within ${timeoutMs} ms; events: ${events.map((e) => `${e.type} ${e.message}`).join(" | ")}`,
        ),
      );
    }, timeoutMs);
    stream.on("data", (d: any) => {
      events.push(d.event);
      if (phases.includes(d.phase)) {
        clearTimeout(timer);
        stream.cancel();
        resolve({ phase: d.phase, events });
      }
    });
    stream.on("error", (e: grpc.ServiceError) => {
      if (e.code !== grpc.status.CANCELLED) {
        clearTimeout(timer);
        reject(e);
      }
    });
    stream.on("end", () => {
      clearTimeout(timer);
      resolve({ phase: "END", events });
    });
  });
}

/** Every event the migration has logged so far, read through WatchMigration (replayed, then cut after a quiet moment). */
export function eventsSoFar(client: AnyClient, id: string, quietMs = 400): Promise<any[]> {
  return new Promise((resolve, reject) => {
    const events: any[] = [];
    const stream = client.WatchMigration({ id, after_sequence: 0 });
    let timer = setTimeout(() => stream.cancel(), quietMs);
    stream.on("data", (d: any) => {
      events.push(d.event);
      clearTimeout(timer);
      timer = setTimeout(() => stream.cancel(), quietMs);
    });
    stream.on("error", (e: grpc.ServiceError) => (e.code === grpc.status.CANCELLED ? resolve(events) : reject(e)));
    stream.on("end", () => resolve(events));
  });
}

/** Asserts every verdict the migration holds reached WatchMigration as a CHECK_RESULT event with the same outcome. */
export async function expectChecksStreamed(client: AnyClient, id: string): Promise<void> {
  const got = await getMigration(client, id);
  const verdicts = new Map<string, string>();
  for (const e of await eventsSoFar(client, id))
    if (e.type === "EVENT_TYPE_CHECK_RESULT") verdicts.set(e.check.name, e.check.status);
  expect(got.checks.length).toBeGreaterThan(0);
  for (const c of got.checks) expect(verdicts.get(c.name), `check ${c.name} as an event`).toBe(c.status);
}

export function localSpec(db: string, source: string, target: string, extra: Record<string, unknown> = {}) {
  return {
    database_name: db,
    provider: "PROVIDER_LOCAL",
    source: { id: source },
    target: { id: target },
    lag_policy: { max_lag_bytes: String(64 * 1024 * 1024), max_lag_time: { seconds: 5 }, window: { seconds: 1 } },
    step_policy: { max_attempts: 3, initial_backoff: { nanos: 200_000_000 }, max_backoff: { seconds: 1 } },
    ...extra,
  };
}

/** Registers a spec's database (as an admin does before its first migration), served by the spec's source. */
export async function registerFor(
  client: AnyClient,
  spec: { database_name: string; provider: string; source: { id: string } },
  team = "test",
): Promise<void> {
  await unary(client, "RegisterDatabase", {
    database: { name: spec.database_name, provider: spec.provider, instances: [spec.source], team },
  });
}

/** Registers a spec's database, then creates its migration; returns the migration. */
export async function createRegistered(
  client: AnyClient,
  spec: ReturnType<typeof localSpec>,
  team = "test",
): Promise<any> {
  await registerFor(client, spec, team);
  return (await unary(client, "CreateMigration", { spec })).migration;
}

export async function getMigration(client: AnyClient, id: string): Promise<any> {
  return (await unary(client, "GetMigration", { id })).migration;
}

/** Approves a cutover expected to fall back, and waits for the migration to be back in REPLICATING, paused; returns it and how long that took. */
export async function approveExpectingFallback(client: AnyClient, id: string): Promise<{ got: any; ms: number }> {
  const approvedAt = Date.now();
  await unary(client, "ApproveCutover", { id });
  let got = await getMigration(client, id);
  for (
    let i = 0;
    i < 600 && !(got.phase === "PHASE_REPLICATING" && got.paused) && got.phase !== "PHASE_COMPLETED";
    i++
  ) {
    await new Promise((r) => setTimeout(r, 50));
    got = await getMigration(client, id);
  }
  return { got, ms: Date.now() - approvedAt };
}
