import { EventEmitter } from "node:events";

/** One resource as the cache keeps it: already encoded, with the version at which it last changed. */
export interface CachedResource {
  name: string;
  typeUrl: string;
  value: Uint8Array;
  /** Cache version at which this resource last changed (its delta version too). */
  version: number;
}

export interface CacheChange {
  typeUrl: string;
  names: string[];
}

/**
 * A resource cache that knows nothing of where resources come from. Every
 * change bumps one monotonic version; a type's version is that of its latest
 * change. Views: a node sees the shared resources plus any set for its group
 * (the group is chosen by the server, e.g. from node metadata).
 */
export class ResourceCache {
  private version = 0;
  private readonly byType = new Map<string, Map<string, CachedResource>>();
  private readonly typeVersion = new Map<string, number>();
  private readonly groups = new Map<string, Map<string, Map<string, CachedResource>>>();
  private readonly changes = new EventEmitter();
  /** When recent versions were made (the newest 1024), for ACK latency. */
  private readonly madeAt = new Map<number, number>();

  constructor() {
    this.changes.setMaxListeners(0);
  }

  currentVersion(): number {
    return this.version;
  }

  /** When a version was made (performance.now() milliseconds), while it is among the newest 1024. */
  versionMadeAt(version: number): number | undefined {
    return this.madeAt.get(version);
  }

  typeVersionOf(typeUrl: string): number {
    return this.typeVersion.get(typeUrl) ?? 0;
  }

  /**
   * Sets (or with value undefined, removes) resources, as one change. Setting
   * a resource to the bytes it already has changes nothing.
   */
  set(typeUrl: string, resources: Array<{ name: string; value: Uint8Array | undefined }>, group?: string): number {
    const table = this.table(typeUrl, group);
    const changed: string[] = [];
    const next = this.version + 1;
    for (const r of resources) {
      const prev = table.get(r.name);
      if (r.value === undefined) {
        if (prev) {
          table.delete(r.name);
          changed.push(r.name);
        }
      } else if (!prev || !Buffer.from(prev.value).equals(Buffer.from(r.value))) {
        table.set(r.name, { name: r.name, typeUrl, value: r.value, version: next });
        changed.push(r.name);
      }
    }
    if (changed.length === 0) return this.version;
    this.version = next;
    this.madeAt.set(next, performance.now());
    if (this.madeAt.size > 1024) this.madeAt.delete(this.madeAt.keys().next().value!);
    this.typeVersion.set(typeUrl, next);
    this.changes.emit("change", { typeUrl, names: changed } satisfies CacheChange);
    return next;
  }

  private table(typeUrl: string, group?: string): Map<string, CachedResource> {
    let types = this.byType;
    if (group !== undefined) {
      types = this.groups.get(group) ?? new Map();
      this.groups.set(group, types);
    }
    let t = types.get(typeUrl);
    if (!t) {
      t = new Map();
      types.set(typeUrl, t);
    }
    return t;
  }

  /** What a node in the group sees of a type: its group's resources over the shared ones. */
  view(typeUrl: string, group?: string): Map<string, CachedResource> {
    const shared = this.byType.get(typeUrl) ?? new Map<string, CachedResource>();
    const own = group !== undefined ? this.groups.get(group)?.get(typeUrl) : undefined;
    if (!own || own.size === 0) return shared;
    return new Map([...shared, ...own]);
  }

  get(typeUrl: string, name: string, group?: string): CachedResource | undefined {
    return this.view(typeUrl, group).get(name);
  }

  onChange(fn: (c: CacheChange) => void): () => void {
    this.changes.on("change", fn);
    return () => this.changes.off("change", fn);
  }
}
