import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { adsClientConstructor, AdsServer, listenXds, ResourceCache, TYPE, type XdsListener } from "../xds/index.js";

/** A bare ADS stream, speaking the protocol by hand, to check what the spec asks of the server. */
function stream(port: number, method: "StreamAggregatedResources" | "DeltaAggregatedResources") {
  const Ctor = adsClientConstructor();
  const client = new Ctor(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as any;
  const call = client[method]() as grpc.ClientDuplexStream<any, any>;
  const inbox: any[] = [];
  const waiters: Array<(m: any) => void> = [];
  call.on("data", (m) => (waiters.length ? waiters.shift()!(m) : inbox.push(m)));
  const ended = new Promise<grpc.StatusObject>((res) => call.on("status", res));
  call.on("error", () => {});
  return {
    /** How the server ended the stream. */
    ended: () => ended,
    send: (m: object) => call.write(m),
    next: (ms = 2000) =>
      new Promise<any>((res, rej) => {
        if (inbox.length) return res(inbox.shift());
        const t = setTimeout(() => rej(new Error("no response")), ms);
        waiters.push((m) => {
          clearTimeout(t);
          res(m);
        });
      }),
    quiet: async (ms = 300) => {
      await new Promise((r) => setTimeout(r, ms));
      return inbox.length === 0;
    },
    close: () => {
      call.cancel();
      client.close();
    },
  };
}

const bytes = (s: string) => new TextEncoder().encode(s);
const node = { id: "node-a", cluster: "test" };

describe("ADS protocol behaviour", () => {
  const cache = new ResourceCache();
  const ads = new AdsServer(cache);
  let xds: XdsListener;

  beforeAll(async () => {
    xds = await listenXds(ads, "127.0.0.1", 0);
    cache.set(TYPE.cluster, [
      { name: "db1", value: bytes("c1") },
      { name: "db2", value: bytes("c2") },
    ]);
  });
  afterAll(async () => {
    ads.close();
    await xds.close();
  });

  it("state of the world: version and nonce per type, ACK and NACK tracked per node, stale nonces ignored", async () => {
    const s = stream(xds.port, "StreamAggregatedResources");
    s.send({ node, type_url: TYPE.cluster, resource_names: [] });
    const r1 = await s.next();
    expect(r1.type_url).toBe(TYPE.cluster);
    expect(r1.resources.map((r: any) => Buffer.from(r.value).toString())).toEqual(["c1", "c2"]);
    s.send({ type_url: TYPE.cluster, version_info: r1.version_info, response_nonce: r1.nonce });
    expect(await s.quiet()).toBe(true);
    const view = () => ads.connected().find((v) => v.node.id === "node-a")!;
    expect(view().acks.get(TYPE.cluster)!.ackedVersion).toBe(Number(r1.version_info));

    const v2 = cache.set(TYPE.cluster, [{ name: "db1", value: bytes("c1-new") }]);
    const r2 = await s.next();
    expect(r2.version_info).toBe(String(v2));
    expect(r2.nonce).not.toBe(r1.nonce);
    // An ACK for the old nonce is stale: it must not count for the new version.
    s.send({ type_url: TYPE.cluster, version_info: r1.version_info, response_nonce: r1.nonce });
    await s.quiet(100);
    expect(ads.outcome(view().id, TYPE.cluster, "db1", v2)).toBe("pending");
    s.send({
      type_url: TYPE.cluster,
      version_info: r1.version_info,
      response_nonce: r2.nonce,
      error_detail: { code: 3, message: "bad cluster" },
    });
    await s.quiet(100);
    expect(ads.outcome(view().id, TYPE.cluster, "db1", v2)).toBe("nacked");
    expect(view().acks.get(TYPE.cluster)!.nackMessage).toBe("bad cluster");
    s.close();
  });

  it("sends clusters before listeners when both change together (make before break)", async () => {
    const s = stream(xds.port, "StreamAggregatedResources");
    s.send({ node: { id: "node-order" }, type_url: TYPE.listener, resource_names: [] });
    await s.next();
    s.send({ type_url: TYPE.cluster, resource_names: [] });
    await s.next();
    cache.set(TYPE.listener, [{ name: "l1", value: bytes("l1") }]);
    cache.set(TYPE.cluster, [{ name: "db3", value: bytes("c3") }]);
    const first = await s.next();
    const second = await s.next();
    expect([first.type_url, second.type_url]).toEqual([TYPE.cluster, TYPE.listener]);
    s.close();
  });

  it("a reconnecting client gets the current state", async () => {
    const a = stream(xds.port, "StreamAggregatedResources");
    a.send({ node: { id: "node-r" }, type_url: TYPE.cluster, resource_names: ["db1"] });
    const before = await a.next();
    a.close();
    const v = cache.set(TYPE.cluster, [{ name: "db1", value: bytes("c1-while-away") }]);
    const b = stream(xds.port, "StreamAggregatedResources");
    b.send({
      node: { id: "node-r" },
      type_url: TYPE.cluster,
      resource_names: ["db1"],
      version_info: before.version_info,
    });
    const now = await b.next();
    expect(now.version_info).toBe(String(v));
    expect(now.resources.map((r: any) => Buffer.from(r.value).toString())).toEqual(["c1-while-away"]);
    b.close();
  });

  it("incremental: sends only what changed, per-resource versions, removals, and honours initial versions", async () => {
    const s = stream(xds.port, "DeltaAggregatedResources");
    s.send({ node: { id: "node-d" }, type_url: TYPE.cluster, resource_names_subscribe: ["db1", "db2"] });
    const r1 = await s.next();
    expect(r1.resources.map((r: any) => r.name).sort()).toEqual(["db1", "db2"]);
    s.send({ type_url: TYPE.cluster, response_nonce: r1.nonce });
    expect(await s.quiet()).toBe(true);
    const id = ads.connected().find((v) => v.node.id === "node-d")!.id;
    const db2v = cache.get(TYPE.cluster, "db2")!.version;
    expect(ads.outcome(id, TYPE.cluster, "db2", db2v)).toBe("acked");

    const v = cache.set(TYPE.cluster, [{ name: "db2", value: bytes("c2-new") }]);
    const r2 = await s.next();
    expect(r2.resources.map((r: any) => [r.name, r.version])).toEqual([["db2", String(v)]]);
    s.send({ type_url: TYPE.cluster, response_nonce: r2.nonce, error_detail: { code: 3, message: "nope" } });
    await s.quiet(100);
    expect(ads.outcome(id, TYPE.cluster, "db2", v)).toBe("nacked");
    cache.set(TYPE.cluster, [{ name: "db2", value: undefined }]);
    const r3 = await s.next();
    expect(r3.removed_resources).toEqual(["db2"]);
    s.close();

    // A client that already holds db1 at its version is not sent it again.
    const again = stream(xds.port, "DeltaAggregatedResources");
    const db1 = cache.get(TYPE.cluster, "db1")!;
    again.send({
      node: { id: "node-d2" },
      type_url: TYPE.cluster,
      resource_names_subscribe: ["db1", "db3"],
      initial_resource_versions: { db1: String(db1.version) },
    });
    const first = await again.next();
    expect(first.resources.map((r: any) => r.name)).toEqual(["db3"]);
    again.close();
  });

  it("an ACK counts the version of the response it answers, whatever version_info the client claims", async () => {
    const s = stream(xds.port, "StreamAggregatedResources");
    s.send({ node: { id: "node-claims" }, type_url: TYPE.cluster, resource_names: ["db1"] });
    const r = await s.next();
    s.send({ type_url: TYPE.cluster, version_info: "99999999", response_nonce: r.nonce });
    await s.quiet(100);
    const v = ads.connected().find((x) => x.node.id === "node-claims")!;
    expect(v.acks.get(TYPE.cluster)!.ackedVersion).toBe(Number(r.version_info));
    expect(ads.outcome(v.id, TYPE.cluster, "db1", 99999999)).toBe("pending");
    // A nonce never sent is forged: it changes nothing.
    s.send({ type_url: TYPE.cluster, version_info: "99999999", response_nonce: "forged" });
    await s.quiet(100);
    expect(v.acks.get(TYPE.cluster)!.ackedVersion).toBe(Number(r.version_info));
    s.close();
  });

  it("ends a stream asking for a type it does not serve with INVALID_ARGUMENT naming the type", async () => {
    const s = stream(xds.port, "StreamAggregatedResources");
    s.send({
      node: { id: "node-t" },
      type_url: "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret",
    });
    const st = await s.ended();
    expect(st.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(st.details).toContain("tls.v3.Secret");
    s.close();
  });

  it("refuses a stream whose first request names no node", async () => {
    const s = stream(xds.port, "StreamAggregatedResources");
    s.send({ type_url: TYPE.cluster });
    const st = await s.ended();
    expect(st.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(st.details).toContain("node.id");
    s.close();
  });
});

describe("ADS admission and bounds", () => {
  const cache = new ResourceCache();
  const ads = new AdsServer(cache, {
    limits: { maxNamesPerType: 3, maxRequestsPerSecond: 20 },
    admit: (n) =>
      n.id === "intruder"
        ? { refuse: `node ${n.id} is not allowed here` }
        : { identity: `id-${n.id}`, visible: (_t, name) => name.startsWith("a") },
  });
  let xds: XdsListener;
  beforeAll(async () => {
    xds = await listenXds(ads, "127.0.0.1", 0);
    cache.set(TYPE.cluster, [
      { name: "a1", value: bytes("a1") },
      { name: "b1", value: bytes("b1") },
    ]);
  });
  afterAll(async () => {
    ads.close();
    await xds.close();
  });

  it("a refused node's stream ends with PERMISSION_DENIED and the reason", async () => {
    const s = stream(xds.port, "StreamAggregatedResources");
    s.send({ node: { id: "intruder" }, type_url: TYPE.cluster });
    const st = await s.ended();
    expect(st.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(st.details).toContain("node intruder is not allowed");
    expect(ads.connected().some((v) => v.node.id === "intruder")).toBe(false);
  });

  it("a stream sees only what its admission makes visible, by wildcard, by name and incrementally", async () => {
    const s = stream(xds.port, "StreamAggregatedResources");
    s.send({ node: { id: "p1" }, type_url: TYPE.cluster, resource_names: [] });
    const r = await s.next();
    expect(r.resources.map((x: any) => Buffer.from(x.value).toString())).toEqual(["a1"]);
    const v = ads.connected().find((x) => x.node.id === "p1")!;
    expect(v.identity).toBe("id-p1");
    expect(ads.subscribes(v.id, TYPE.cluster, "b1")).toBe(false);
    s.send({ type_url: TYPE.cluster, resource_names: ["b1"], response_nonce: r.nonce });
    expect((await s.next()).resources ?? []).toEqual([]);
    s.close();
    const d = stream(xds.port, "DeltaAggregatedResources");
    d.send({ node: { id: "p2" }, type_url: TYPE.cluster, resource_names_subscribe: ["a1", "b1"] });
    expect((await d.next()).resources.map((x: any) => x.name)).toEqual(["a1"]);
    d.close();
  });

  it("ends a stream that subscribes to too many names, or floods requests, with RESOURCE_EXHAUSTED", async () => {
    const many = stream(xds.port, "DeltaAggregatedResources");
    many.send({ node: { id: "p3" }, type_url: TYPE.cluster, resource_names_subscribe: ["a1", "a2", "a3", "a4"] });
    const st = await many.ended();
    expect(st.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(st.details).toContain("at most 3 names");
    const flood = stream(xds.port, "StreamAggregatedResources");
    flood.send({ node: { id: "p4" }, type_url: TYPE.cluster, resource_names: ["a1"] });
    for (let i = 0; i < 40; i++)
      flood.send({ type_url: TYPE.cluster, resource_names: ["a1"], response_nonce: `stale-${i}` });
    const fl = await flood.ended();
    expect(fl.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(fl.details).toContain("requests in a second");
    // The server still serves others.
    const ok = stream(xds.port, "StreamAggregatedResources");
    ok.send({ node: { id: "p5" }, type_url: TYPE.cluster, resource_names: [] });
    expect((await ok.next()).resources).toHaveLength(1);
    ok.close();
  });
});
