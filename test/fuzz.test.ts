import { readFileSync, writeFileSync } from "node:fs";
import http2 from "node:http2";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import * as grpc from "@grpc/grpc-js";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CdcService, MigrationService } from "../src/gen/migration/v1/migration_pb.js";
import { clientTlsOf, makeDevPki, serveTlsArgs, type DevPki } from "../src/security/dev-pki.js";
import { adsClientConstructor, TYPE } from "../xds/index.js";
import { healthClient, migrationClient, mtlsCredentials, unary, type AnyClient } from "./helpers/grpc-clients.js";
import { createRegistered, eventsSoFar, localSpec, waitForPhase } from "./helpers/migrations.js";
import { LocalProvider } from "../src/providers/local/local-provider.js";
import { createSampleSource } from "../testing/sample.js";
import { destroyClusters } from "./helpers/clusters.js";
import { startServiceProcess, tempDir, type ServiceProcess } from "./helpers/service-process.js";

const ADMIN = "spiffe://fuzz.example/sa/admin";
const SIDECAR = "spiffe://fuzz.example/sa/sidecar";
const POLICY = `grants:\n  - { identities: ["${ADMIN}"], databases: ["**"], role: admin }\nproxies:\n  - { identities: ["${SIDECAR}"], databases: ["**"] }\n`;

/** The service's old space: what the fuzzing leaves behind is collected within it, or the process ends. */
const HEAP_MIB = 64;
/** What the service's resident memory may grow by over the whole suite: its old space, and buffers TLS and HTTP/2 keep. */
const RSS_GROWTH_MIB = 48;
/** gRPC statuses a well-behaved server may answer garbage with; UNKNOWN, INTERNAL and UNAVAILABLE would be defects. */
const ACCEPTABLE = new Set([0, 1, 3, 5, 6, 7, 8, 9, 12]);

interface Answer {
  http: number;
  grpcStatus: number | undefined;
  message: string;
  body: Buffer;
}

/** One raw HTTP/2 request, the way a hostile or broken client would send it; a stream still open after waitMs is closed. */
function request(
  session: http2.ClientHttp2Session,
  headers: http2.OutgoingHttpHeaders,
  body: Buffer,
  waitMs = 3000,
): Promise<Answer | "open"> {
  return new Promise((resolve, reject) => {
    const req = session.request({ ":method": "POST", ...headers });
    const out: Answer = { http: 0, grpcStatus: undefined, message: "", body: Buffer.alloc(0) };
    const take = (h: http2.IncomingHttpHeaders) => {
      if (h[":status"]) out.http = Number(h[":status"]);
      if (h["grpc-status"] !== undefined) out.grpcStatus = Number(h["grpc-status"]);
      if (h["grpc-message"]) out.message = decodeURIComponent(String(h["grpc-message"]));
    };
    const timer = setTimeout(() => {
      req.close();
      resolve("open");
    }, waitMs);
    req.on("response", take);
    req.on("trailers", take);
    req.on("data", (d: Buffer) => (out.body = Buffer.concat([out.body, d])));
    req.on("end", () => {
      clearTimeout(timer);
      resolve(out);
    });
    req.on("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    req.end(body);
  });
}

const frame = (payload: Buffer, compressed = false) => {
  const f = Buffer.alloc(5 + payload.length);
  f[0] = compressed ? 1 : 0;
  f.writeUInt32BE(payload.length, 1);
  payload.copy(f, 5);
  return f;
};

/** The service's resident memory, as the kernel counts it. */
function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return Number(m![1]) / 1024;
}

describe("fuzzing the running service, its engine driving migrations meanwhile: API and xDS", () => {
  const tmp = tempDir("fuzz");
  const provider = new LocalProvider(join(tmp.dir, "data", "local"));
  let pki: DevPki;
  let svc: ServiceProcess;
  let admin: AnyClient;
  let api: http2.ClientHttp2Session;
  /** Two migrations in flight: one waiting for approval, one paused while it replicates. */
  let id: string;
  let pausedId: string;
  let before: Awaited<ReturnType<typeof snapshot>>;
  const tls = () => clientTlsOf(pki, "admin");
  const adminCreds = () => mtlsCredentials(pki, "admin");

  /**
   * Everything the fuzzing must leave as it was: every migration's phase, flags, state and whole event log, every
   * route, and every replication slot and server of the clusters behind them; and the service's memory.
   */
  async function snapshot() {
    const migrations = [];
    for (const m of [id, pausedId]) {
      const got = (await unary(admin, "GetMigration", { id: m })).migration;
      const events = (await eventsSoFar(admin, m)).map((e) => `${e.sequence} ${e.type} ${e.message}`);
      migrations.push({
        id: m,
        phase: got.phase,
        paused: got.paused,
        approved: got.cutover_approved,
        updated: got.updated_at,
        events,
      });
    }
    const routes = [];
    for (const db of ["fuzz-db", "held-db"]) {
      const r = (await unary(admin, "GetRoutingStatus", { database_name: db })).status;
      routes.push({ db, endpoint: r.endpoint, version: r.version, listener: r.listener_port });
    }
    const clusters = [];
    for (const c of provider.list().sort()) {
      const running = await provider.cluster({ id: c }).isRunning();
      const slots = running ? (await provider.describe({ id: c })).slots.map((s) => `${s.name}:${s.type}`).sort() : [];
      clusters.push({ c, running, fenced: await provider.isFenced({ id: c }), slots });
    }
    const listed = (await unary(admin, "ListMigrations", {})).migrations.map((m: any) => m.id).sort();
    return { state: { migrations, routes, clusters, listed }, rss: rssMiB(svc.child.pid!) };
  }

  beforeAll(async () => {
    pki = await makeDevPki(join(tmp.dir, "pki"), {
      serverNames: ["127.0.0.1"],
      clients: [
        { name: "admin", identity: ADMIN },
        { name: "sidecar", identity: SIDECAR },
      ],
    });
    const policy = join(tmp.dir, "policy.yaml");
    writeFileSync(policy, POLICY);
    // A generous request budget, so the fuzzed input reaches the handlers rather than the rate limit; a small heap,
    // so that what the fuzzing leaves behind either is collected or ends the process (V8 otherwise lets garbage
    // pile up to hundreds of MiB before a full collection, which says nothing either way).
    await Promise.all([
      createSampleSource(provider, "fuzz-src", { rows: 100 }),
      createSampleSource(provider, "held-src", { rows: 100 }),
    ]);
    // The engine on: what the fuzzing might disturb is real work in flight, not a table nobody drives.
    svc = await startServiceProcess(
      [...["--data-dir", join(tmp.dir, "data"), "--max-rps-per-identity", "100000"], ...serveTlsArgs(pki, policy)],
      {
        NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ""} --max-old-space-size=${HEAP_MIB}`,
      },
    );
    admin = migrationClient(svc.address, adminCreds());
    id = (await createRegistered(admin, localSpec("fuzz-db", "fuzz-src", "fuzz-tgt"))).id;
    pausedId = (
      await createRegistered(
        admin,
        localSpec("held-db", "held-src", "held-tgt", { lag_policy: { window: { seconds: 3600 } } }),
      )
    ).id;
    await waitForPhase(admin, pausedId, ["PHASE_REPLICATING"]);
    await unary(admin, "PauseMigration", { id: pausedId, reason: "held through the fuzzing" });
    await waitForPhase(admin, id, ["PHASE_READY_FOR_CUTOVER"]);
    // Settled: the engine has said what it says on reaching these phases (verdicts, the pause taking hold).
    let previous = "";
    for (let i = 0; i < 20; i++) {
      const now = JSON.stringify((await snapshot()).state);
      if (now === previous) break;
      previous = now;
      await new Promise((r) => setTimeout(r, 1500));
    }
    api = http2.connect(`https://127.0.0.1:${svc.port}`, tls());
    api.on("error", () => {});
    before = await snapshot();
  }, 120_000);

  afterAll(async () => {
    api?.close();
    admin?.close();
    await svc?.stop();
    await destroyClusters(provider);
    tmp.remove();
  });

  const methods = [MigrationService, CdcService].flatMap((s) =>
    s.methods.map((m) => ({ path: `/${s.typeName}/${m.name}`, kind: m.methodKind })),
  );

  it("random and malformed protobuf to every method: a clear status, never UNKNOWN or INTERNAL", async () => {
    const seen = new Map<number, number>();
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...methods), fc.uint8Array({ maxLength: 600 }), async (m, bytes) => {
        const a = await request(
          api,
          { ":path": m.path, "content-type": "application/grpc", te: "trailers" },
          frame(Buffer.from(bytes)),
          1500,
        );
        if (a === "open") return; // a well-formed watch of something that exists keeps streaming: closed here
        seen.set(a.grpcStatus ?? -1, (seen.get(a.grpcStatus ?? -1) ?? 0) + 1);
        expect(ACCEPTABLE.has(a.grpcStatus ?? -1), `${m.path} answered ${a.grpcStatus} ${a.message}`).toBe(true);
        expect(a.message.length).toBeLessThan(1000);
      }),
      { numRuns: 400 },
    );
    console.log("fuzz: protobuf statuses", Object.fromEntries(seen));
    // A frame whose declared length lies, and a body that is not a frame at all.
    const lying = Buffer.from([0, 0, 0, 1, 0, 1, 2, 3]);
    for (const body of [lying, Buffer.from("not a grpc frame")]) {
      const a = await request(
        api,
        { ":path": methods[0]!.path, "content-type": "application/grpc", te: "trailers" },
        body,
      );
      expect(a).not.toBe("open");
      expect(
        ACCEPTABLE.has((a as Answer).grpcStatus ?? -1),
        `${(a as Answer).grpcStatus} ${(a as Answer).message}`,
      ).toBe(true);
    }
  });

  it("wrong JSON types and unknown fields over Connect: a 4xx naming the problem, never a 5xx", async () => {
    const unaryPaths = methods.filter((m) => m.kind === "unary").map((m) => m.path);
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...unaryPaths),
        fc.oneof(
          fc.jsonValue(),
          fc.object(),
          fc.dictionary(fc.constantFrom("id", "spec", "phases", "page_size", "reason", "zzz"), fc.jsonValue()),
        ),
        async (path, value) => {
          const a = await request(
            api,
            { ":path": path, "content-type": "application/json" },
            Buffer.from(JSON.stringify(value)),
          );
          expect(a).not.toBe("open");
          const ans = a as Answer;
          expect(ans.http, `${path} ${ans.body.toString().slice(0, 200)}`).toBeLessThan(500);
          if (ans.http >= 400) expect(JSON.parse(ans.body.toString()).code).not.toMatch(/internal|unknown/);
        },
      ),
      { numRuns: 300 },
    );
  });

  it("misspelled enum names and unknown fields, over Connect and gRPC-Web JSON: INVALID_ARGUMENT naming field and value, nothing created", async () => {
    const path = "/migration.v1.MigrationService/CreateMigration";
    // Protobuf JSON, as a Connect client sends it.
    const spec = {
      database_name: "strict-db",
      provider: "PROVIDER_LOCAL",
      source: { id: "strict-src" },
      target: { id: "strict-tgt" },
    };
    const cases: Array<[object, RegExp]> = [
      [
        { ...spec, cutover_mode: "CUTOVER_MODE_AUTOMATC" },
        /^spec\.cutover_mode: "CUTOVER_MODE_AUTOMATC" is not a migration\.v1\.CutoverMode value/,
      ],
      [
        { ...spec, failure_policy: "FAILURE_POLICY_HLD" },
        /^spec\.failure_policy: "FAILURE_POLICY_HLD" is not .*FAILURE_POLICY_HOLD/,
      ],
      [{ ...spec, cdc_policy: { mode: "CDC_MODE_IGNOR" } }, /^spec\.cdc_policy\.mode: "CDC_MODE_IGNOR" is not/],
      [{ ...spec, cutover_modes: "CUTOVER_MODE_AUTOMATIC" }, /"cutover_modes" is unknown/],
    ];
    for (const [bad, named] of cases) {
      const body = Buffer.from(JSON.stringify({ spec: bad }));
      const connect = (await request(api, { ":path": path, "content-type": "application/json" }, body)) as Answer;
      expect(connect.http, connect.body.toString()).toBe(400);
      expect(JSON.parse(connect.body.toString())).toMatchObject({
        code: "invalid_argument",
        message: expect.stringMatching(named),
      });
      // gRPC-Web's trailers travel in the body, as a frame flagged 0x80.
      const web = (await request(
        api,
        { ":path": path, "content-type": "application/grpc-web+json" },
        frame(body),
      )) as Answer;
      const trailers = web.body.subarray(web.body.indexOf(0x80) + 5).toString("utf8");
      expect(/grpc-status: (\d+)/.exec(trailers)?.[1]).toBe(String(grpc.status.INVALID_ARGUMENT));
      expect(decodeURIComponent(/grpc-message: (.*)\r?\n?/.exec(trailers)?.[1] ?? "")).toMatch(named);
    }
    const listed = await unary(admin, "ListMigrations", { database_name: "strict-db" });
    expect(listed.migrations).toEqual([]);
  });

  it("an oversized message and a gzip bomb are refused with RESOURCE_EXHAUSTED, memory bounded", async () => {
    const path = "/migration.v1.MigrationService/GetMigration";
    const big = await request(
      api,
      { ":path": path, "content-type": "application/grpc", te: "trailers" },
      frame(Buffer.alloc(5 * 1024 * 1024, 0x0a)),
    );
    expect((big as Answer).grpcStatus).toBe(grpc.status.RESOURCE_EXHAUSTED);
    // 64 MiB of one field's bytes, gzipped to about 64 KiB.
    const bomb = gzipSync(Buffer.alloc(64 * 1024 * 1024, 0x0a));
    const rssBefore = rssMiB(svc.child.pid!);
    const a = (await request(
      api,
      { ":path": path, "content-type": "application/grpc", te: "trailers", "grpc-encoding": "gzip" },
      frame(bomb, true),
    )) as Answer;
    expect(a.grpcStatus).toBe(grpc.status.RESOURCE_EXHAUSTED);
    console.log(
      `fuzz: gzip bomb of ${bomb.length} bytes (64 MiB inflated): ${grpc.status[a.grpcStatus!]} "${a.message}"; rss ${rssBefore.toFixed(0)} -> ${rssMiB(svc.child.pid!).toFixed(0)} MiB`,
    );
    expect(rssMiB(svc.child.pid!)).toBeLessThan(rssBefore + 48);
  });

  it("10,000 watches opened and dropped", async () => {
    const last = before.state.migrations[0]!.events.at(-1)!;
    const lastButOne = String(BigInt(last.split(" ")[0]!) - 1n);
    const started = Date.now();
    const outcomes = new Map<string, number>();
    for (let batch = 0; batch < 100; batch++) {
      // A connection per hundred: a client that cancels a call before it starts may never reset its stream
      // (grpc-js does not), so what it left open is freed when its connection closes, as a dropped client's would be.
      const conn = migrationClient(svc.address, adminCreds(), {
        "grpc.channel_id": `fuzz-${batch}`,
      } as grpc.ChannelOptions);
      await Promise.all(
        Array.from({ length: 100 }, (_, i) => {
          // From the last event on: each watch that reads gets one, as a client resuming a watch does.
          const w = conn.WatchMigration({ id, after_sequence: lastButOne });
          return new Promise<void>((res) => {
            const done = (how: string) => {
              outcomes.set(how, (outcomes.get(how) ?? 0) + 1);
              res();
            };
            w.on("error", (e: grpc.ServiceError) => done(grpc.status[e.code]!));
            // Half are dropped at once, half after their first event.
            if (i % 2 === 0) w.cancel();
            else w.once("data", () => (w.cancel(), done("received")));
          });
        }),
      );
      conn.close();
    }
    console.log(`fuzz: 10,000 watches opened and dropped in ${Date.now() - started} ms`, Object.fromEntries(outcomes));
    expect(outcomes.get("received")).toBeGreaterThan(0);
    expect([...outcomes.keys()].filter((k) => !["received", "CANCELLED", "RESOURCE_EXHAUSTED"].includes(k))).toEqual(
      [],
    );
    // Their places are given back: the identity may open streams again.
    await expect
      .poll(
        async () => {
          const w = admin.WatchMigration({ id, after_sequence: "0" });
          const got = await new Promise<string>(
            (res) => (
              w.once("data", () => res("data")),
              w.on("error", (e: grpc.ServiceError) => res(grpc.status[e.code]!))
            ),
          );
          w.cancel();
          return got;
        },
        { timeout: 10_000, interval: 200 },
      )
      .toBe("data");
  }, 120_000);

  it("xDS: garbage, wrong type URLs, stale and forged nonces and floods end streams cleanly", async () => {
    const Ctor = adsClientConstructor();
    const sidecar = new Ctor(`127.0.0.1:${svc.xdsPort}`, mtlsCredentials(pki, "sidecar")) as any;
    const adsRequest = fc.record({
      type_url: fc.oneof(
        fc.constantFrom(TYPE.listener, TYPE.cluster, TYPE.route, TYPE.endpoint, ""),
        fc.string({ maxLength: 80 }),
      ),
      resource_names: fc.array(fc.oneof(fc.constant("fuzz-db"), fc.constant("*"), fc.string({ maxLength: 40 })), {
        maxLength: 20,
      }),
      response_nonce: fc.oneof(fc.constant(""), fc.string({ maxLength: 12 })),
      version_info: fc.string({ maxLength: 12 }),
      error_detail: fc.option(
        fc.record({ code: fc.integer({ min: 0, max: 16 }), message: fc.string({ maxLength: 60 }) }),
        { nil: undefined },
      ),
    });
    const codes = new Map<number, number>();
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(fc.constant(`${SIDECAR}#pod-1`), fc.string({ maxLength: 60 })),
        fc.array(adsRequest, { minLength: 1, maxLength: 8 }),
        async (nodeId, reqs) => {
          const call = sidecar.StreamAggregatedResources() as grpc.ClientDuplexStream<any, any>;
          call.on("data", () => {});
          const ended = new Promise<number>((res) => call.on("status", (s: grpc.StatusObject) => res(s.code)));
          call.on("error", () => {});
          reqs.forEach((r, i) => call.write(i === 0 ? { ...r, node: { id: nodeId } } : r));
          const code = await Promise.race([ended, new Promise<number>((res) => setTimeout(() => res(-1), 60))]);
          call.cancel();
          codes.set(code, (codes.get(code) ?? 0) + 1);
          // Still open (-1), or ended by the server with a reason: never UNKNOWN or INTERNAL.
          expect([-1, 0, 1, 3, 7, 8].includes(code), `code ${code}`).toBe(true);
        },
      ),
      { numRuns: 150 },
    );
    console.log("fuzz: xDS stream outcomes (-1: still open)", Object.fromEntries(codes));

    // A flood on one stream is cut off, and a stale nonce after a real response changes nothing.
    const flood = sidecar.StreamAggregatedResources() as grpc.ClientDuplexStream<any, any>;
    const first = new Promise<any>((res) => flood.once("data", res));
    const status = new Promise<grpc.StatusObject>((res) => flood.on("status", res));
    flood.on("error", () => {});
    flood.write({ node: { id: `${SIDECAR}#flood` }, type_url: TYPE.cluster, resource_names: [] });
    const r = await first;
    for (let i = 0; i < 2000; i++)
      flood.write({ type_url: TYPE.cluster, response_nonce: i % 2 ? r.nonce + "x" : "stale", version_info: "999" });
    expect((await status).code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    sidecar.close();

    // Raw garbage on the ADS method itself.
    const xds = http2.connect(`https://127.0.0.1:${svc.xdsPort}`, clientTlsOf(pki, "sidecar"));
    xds.on("error", () => {});
    const g = await request(
      xds,
      {
        ":path": "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources",
        "content-type": "application/grpc",
        te: "trailers",
      },
      frame(Buffer.from([0xff, 0xff, 0xff, 0x0f, 0x12])),
    );
    console.log("fuzz: garbage protobuf on ADS:", g === "open" ? "stream left open" : `${g.grpcStatus} ${g.message}`);
    // The client's mistake, said as such: INVALID_ARGUMENT naming what did not decode, never INTERNAL.
    expect(g).toMatchObject({
      grpcStatus: grpc.status.INVALID_ARGUMENT,
      message: expect.stringContaining("does not decode as envoy.service.discovery.v3.DiscoveryRequest"),
    });
    xds.close();
  });

  it("afterwards: healthy, memory near where it started, and no phase, flag, event, route, slot or cluster changed", async () => {
    const h = healthClient(svc.address, adminCreds());
    expect((await unary(h, "Check", { service: "" })).status).toBe("SERVING");
    h.close();
    const after = await snapshot();
    console.log(
      `fuzz: rss ${before.rss.toFixed(0)} MiB before, ${after.rss.toFixed(0)} MiB after (old space capped at ${HEAP_MIB} MiB)`,
    );
    console.log(
      `fuzz: compared ${before.state.migrations.reduce((n, m) => n + m.events.length, 0)} events, ${before.state.routes.length} routes, ${before.state.clusters.length} clusters`,
    );
    expect(after.state).toEqual(before.state);
    expect(svc.alive()).toBe(true);
    expect(after.rss).toBeLessThan(before.rss + RSS_GROWTH_MIB);
  });
});
