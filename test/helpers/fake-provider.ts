import type { StorageFigures } from "../../src/domain/storage.js";
import type { CheckResult } from "../../src/domain/check.js";
import { lsnAtLeast, lsnFromBigInt, type Lsn } from "../../src/domain/lsn.js";
import type {
  Endpoint,
  InstanceDescription,
  InstanceRef,
  Provider,
  ReplicationStatus,
  SlotInfo,
} from "../../src/providers/provider.js";
import type { PeerConnection, SqlPort } from "../../src/providers/sql.js";
import { InvalidInstanceStateError, ReplayTimeoutError, UnknownInstanceError } from "../../src/providers/errors.js";

/** One instance as the fake keeps it: the facts steps change and check. */
export interface FakeInstance {
  id: string;
  major: number;
  running: boolean;
  fenced: boolean;
  inRecovery: boolean;
  /** Its WAL position (bytes). */
  lsn: bigint;
  /** For a replica: whom it replays, and whether it keeps up. */
  replicaOf?: string;
  stalled?: boolean;
  retired: boolean;
  /** The migration that created it; unset for instances pgshift did not create. */
  owner?: string;
  promotions: number;
  port: number;
  slots: SlotInfo[];
  settings: Record<string, string>;
  /** Client sessions pgshift did not open that a fenced instance still has (a fence that leaks). */
  intruders?: string[];
}

type Method = Exclude<keyof Provider, "kind">;

/**
 * An in-memory Provider for unit tests of the engine: instances are records,
 * every call is logged, and any method can be made to fail. It runs no SQL:
 * steps reach SQL only through activities, which tests fake too.
 */
export class FakeProvider implements Provider {
  readonly kind = "local" as const;
  readonly instances = new Map<string, FakeInstance>();
  readonly calls: string[] = [];
  /** Lag the replica reports, in bytes and seconds. */
  lag = { bytes: 0n, seconds: 0 };
  replicaMajorVersion = 15;
  private readonly failures = new Map<Method, { error: Error; times: number }>();
  private nextPort = 6000;

  addSource(id: string, opts: Partial<FakeInstance> = {}): FakeInstance {
    const inst: FakeInstance = {
      id,
      major: 15,
      running: true,
      fenced: false,
      inRecovery: false,
      lsn: 0x3000000n,
      retired: false,
      promotions: 0,
      port: this.nextPort++,
      slots: [],
      settings: { wal_level: "logical", max_connections: "100" },
      ...opts,
    };
    this.instances.set(id, inst);
    return inst;
  }

  instance(ref: InstanceRef): FakeInstance {
    const i = this.instances.get(ref.id);
    if (!i) throw new UnknownInstanceError(ref.id, "no such fake instance");
    return i;
  }

  /** Makes `method` throw `error` on its next `times` calls (Infinity: always). */
  fail(method: Method, error: Error, times = 1): void {
    this.failures.set(method, { error, times });
  }

  /** How often `method` was called (for idempotency checks). */
  count(method: Method): number {
    return this.calls.filter((c) => c.startsWith(`${method}(`)).length;
  }

  private enter(method: Method, ...args: unknown[]): void {
    this.calls.push(
      `${method}(${args.map((a) => (typeof a === "object" && a && "id" in a ? (a as InstanceRef).id : String(a))).join(", ")})`,
    );
    const f = this.failures.get(method);
    if (f && f.times > 0) {
      f.times--;
      throw f.error;
    }
  }

  /** A replica replays its source's WAL unless stalled; called wherever time would pass. */
  private replay(): void {
    for (const i of this.instances.values()) {
      if (i.replicaOf && i.inRecovery && i.running && !i.stalled) i.lsn = this.instances.get(i.replicaOf)?.lsn ?? i.lsn;
    }
  }

  async describe(ref: InstanceRef): Promise<InstanceDescription> {
    this.enter("describe", ref);
    const i = this.instance(ref);
    return {
      ref,
      versionNum: i.major * 10000 + 18,
      major: i.major,
      sizeBytes: 1n << 20n,
      databases: ["app", "postgres"],
      settings: { ...i.settings },
      extensions: [{ name: "plpgsql", version: "1.0", database: "app" }],
      slots: i.slots.map((s) => ({ ...s })),
      inRecovery: i.inRecovery,
      currentLsn: lsnFromBigInt(i.lsn),
    };
  }

  async replicaMajor(): Promise<number> {
    this.enter("replicaMajor");
    return this.replicaMajorVersion;
  }

  async targetExtensions(source: InstanceRef): Promise<Map<string, string[]>> {
    this.enter("targetExtensions", source);
    return new Map([["plpgsql", ["1.0"]]]);
  }

  async dropInactiveSlot(ref: InstanceRef, slot: string): Promise<bigint> {
    this.enter("dropInactiveSlot", ref, slot);
    const i = this.instance(ref);
    const s = i.slots.find((x) => x.name === slot);
    if (!s) throw new UnknownInstanceError(`${ref.id}/${slot}`, "no such slot");
    if (s.active) throw new InvalidInstanceStateError(ref.id, `slot ${slot} is in use`);
    i.slots = i.slots.filter((x) => x !== s);
    return s.retainedBytes;
  }

  /** Verdicts a test sets for the platform's own checks. */
  platform: CheckResult[] = [];

  async platformChecks(source: InstanceRef): Promise<CheckResult[]> {
    this.enter("platformChecks", source);
    return this.platform;
  }

  async exists(ref: InstanceRef): Promise<boolean> {
    this.enter("exists", ref);
    return this.instances.has(ref.id);
  }

  async createReplica(source: InstanceRef, target: InstanceRef, owner: string): Promise<void> {
    this.enter("createReplica", source, target, owner);
    const src = this.instance(source);
    const there = this.instances.get(target.id);
    if (there && there.owner !== owner)
      throw new InvalidInstanceStateError(target.id, `${target.id} exists and was not created by migration ${owner}`);
    if (there) return;
    this.addSource(target.id, {
      replicaOf: source.id,
      inRecovery: true,
      lsn: src.lsn,
      major: this.replicaMajorVersion,
      owner,
    });
  }

  async replicationStatus(source: InstanceRef, target: InstanceRef): Promise<ReplicationStatus> {
    this.enter("replicationStatus", source, target);
    this.replay();
    const src = this.instance(source);
    const tgt = this.instances.get(target.id);
    return {
      state: tgt?.running ? "streaming" : "stopped",
      targetRunning: !!tgt?.running,
      sourceLsn: lsnFromBigInt(src.lsn),
      replayLsn: tgt ? lsnFromBigInt(tgt.lsn) : null,
      lagBytes: this.lag.bytes,
      lagSeconds: this.lag.seconds,
    };
  }

  async walGenerationRate(ref: InstanceRef): Promise<number> {
    this.enter("walGenerationRate", ref);
    return 0;
  }

  async currentLsn(ref: InstanceRef): Promise<Lsn> {
    this.enter("currentLsn", ref);
    this.replay();
    return lsnFromBigInt(this.instance(ref).lsn);
  }

  async fence(ref: InstanceRef): Promise<void> {
    this.enter("fence", ref);
    this.instance(ref).fenced = true;
  }

  async fencedPosition(ref: InstanceRef): Promise<{ lsn: Lsn; intruders: string[] }> {
    this.enter("fencedPosition", ref);
    this.replay();
    const i = this.instance(ref);
    return { lsn: lsnFromBigInt(i.lsn), intruders: i.intruders ?? [] };
  }

  async intruders(ref: InstanceRef): Promise<string[]> {
    this.enter("intruders", ref);
    return this.instance(ref).intruders ?? [];
  }

  async unfence(ref: InstanceRef): Promise<void> {
    this.enter("unfence", ref);
    this.instance(ref).fenced = false;
  }

  async isFenced(ref: InstanceRef): Promise<boolean> {
    this.enter("isFenced", ref);
    return this.instance(ref).fenced;
  }

  async waitForReplay(target: InstanceRef, lsn: Lsn, timeoutMs: number): Promise<void> {
    this.enter("waitForReplay", target, lsn);
    this.replay();
    const t = this.instance(target);
    if (!t.inRecovery || lsnAtLeast(lsnFromBigInt(t.lsn), lsn)) return;
    throw new ReplayTimeoutError(target.id, lsn, lsnFromBigInt(t.lsn), timeoutMs);
  }

  async promote(_source: InstanceRef, target: InstanceRef): Promise<void> {
    this.enter("promote", _source, target);
    const t = this.instance(target);
    if (!t.inRecovery) return;
    t.inRecovery = false;
    t.promotions++;
  }

  async detachReplica(source: InstanceRef, target: InstanceRef): Promise<void> {
    this.enter("detachReplica", source, target);
    const t = this.instances.get(target.id);
    if (t) delete t.replicaOf;
  }

  async endpoint(ref: InstanceRef): Promise<Endpoint> {
    this.enter("endpoint", ref);
    return { host: "127.0.0.1", port: this.instance(ref).port };
  }

  async deleteReplica(
    source: InstanceRef,
    target: InstanceRef,
    owner: string,
  ): Promise<"deleted" | "absent" | "not-ours"> {
    this.enter("deleteReplica", source, target, owner);
    const there = this.instances.get(target.id);
    if (!there) return "absent";
    if (there.owner !== owner) return "not-ours";
    this.instances.delete(target.id);
    return "deleted";
  }

  async retire(ref: InstanceRef, how: "stop" | "delete", snapshot: string): Promise<string> {
    this.enter("retire", ref, how, snapshot);
    const i = this.instance(ref);
    i.retired = true;
    i.running = false;
    return `${ref.id} retired (${how}, snapshot ${snapshot})`;
  }

  /** What storage() reports of every instance: plenty free, unless a test says otherwise. */
  storageFigures: StorageFigures = { freeBytes: 80 * 2 ** 30, totalBytes: 100 * 2 ** 30, by: "the fake" };

  async storage(ref: InstanceRef): Promise<StorageFigures | undefined> {
    this.enter("storage", ref);
    return this.storageFigures;
  }

  async keepRetired(ref: InstanceRef): Promise<string | undefined> {
    this.enter("keepRetired", ref);
    const i = this.instance(ref);
    if (!i.running) return undefined;
    i.running = false;
    return `${ref.id} was running again; stopped again`;
  }

  sql(ref: InstanceRef): SqlPort {
    throw new Error(`the fake provider runs no SQL (asked for ${ref.id}): steps reach SQL through activities`);
  }

  async peerConnection(ref: InstanceRef): Promise<PeerConnection> {
    throw new Error(`the fake provider has no peer connection for ${ref.id}`);
  }

  /** Writes on an instance move its WAL on (as an application's commits would). */
  write(ref: InstanceRef, bytes: bigint): void {
    this.instance(ref).lsn += bytes;
  }
}
