/**
 * Time from a routing change to its ACK by all of N ADS streams, the CPU that costs, and the server's memory per
 * stream. Each xDS server runs in a process of its own, its streams in another (so memory figures are the server's),
 * multiplexed over HTTP/2 connections of 100 streams each, each ACKing every response as a proxy does.
 *
 * With --servers K the N streams are spread over K servers (replicas behind one store, each told of the change at the
 * same moment, as the store's NOTIFY does) and a round ends when the last of them has all its streams' ACKs.
 *
 *   npm run bench:xds                      # N = 100, 1000, 10000, 50000 on one server
 *   npm run bench:xds -- 100 500           # other sizes
 *   npm run bench:xds -- 10000 --servers 2
 */
import { fork, type ChildProcess } from "node:child_process";
import * as grpc from "@grpc/grpc-js";
import { adsClientConstructor, AdsServer, listenXds, ResourceCache, TYPE } from "../xds/index.js";
import { allConnected, ackRound, seedRoute } from "./ack-rounds.js";

const ROUNDS = 7;
const PER_CONNECTION = 100;
const self = new URL(import.meta.url).pathname;
const cpuMs = (u: NodeJS.CpuUsage) => (u.user + u.system) / 1000;

type Msg =
  | { kind: "listening"; port: number }
  | { kind: "connected"; rssPerStreamKiB: number; heapPerStreamKiB: number }
  | { kind: "acked"; round: number; cpuMs: number }
  | { kind: "cpu"; cpuMs: number };

const spawn = (args: string[]) =>
  fork(self, args, {
    execArgv: [
      "--expose-gc",
      "--import",
      "tsx",
      ...(process.env.XDS_PROF && args[0] === "--server" ? ["--cpu-prof", "--cpu-prof-dir=/tmp/prof"] : []),
    ],
    stdio: "inherit",
  });

function next<T extends Msg["kind"]>(child: ChildProcess, kind: T): Promise<Extract<Msg, { kind: T }>> {
  return new Promise((res) => {
    const on = (m: Msg) => {
      if (m.kind !== kind) return;
      child.off("message", on);
      res(m as Extract<Msg, { kind: T }>);
    };
    child.on("message", on);
  });
}

/** A stream process: n ADS streams to one server, each ACKing whatever it is sent. */
async function clients(port: number, n: number): Promise<void> {
  const Ctor = adsClientConstructor();
  const conns: grpc.Client[] = [];
  for (let i = 0; i < Math.ceil(n / PER_CONNECTION); i++) {
    // A distinct channel option per connection keeps grpc-js from sharing one subchannel among all.
    conns.push(
      new Ctor(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), { "grpc.channel_id": i } as grpc.ChannelOptions),
    );
  }
  for (let i = 0; i < n; i++) {
    const call = (conns[Math.floor(i / PER_CONNECTION)] as any).StreamAggregatedResources() as grpc.ClientDuplexStream<
      any,
      any
    >;
    call.on("data", (res: any) =>
      call.write({ type_url: res.type_url, version_info: res.version_info, response_nonce: res.nonce }),
    );
    call.on("error", () => {});
    call.write({ node: { id: `bench-${port}-${i}` }, type_url: TYPE.cluster, resource_names: [] });
  }
  process.on("message", () => process.send?.({ kind: "cpu", cpuMs: cpuMs(process.cpuUsage()) } satisfies Msg));
  await new Promise(() => {});
}

/** A server process: one ADS server whose n streams come from a stream process of its own. */
async function server(n: number): Promise<void> {
  // A normal exit, so a --cpu-prof profile gets written.
  process.on("SIGTERM", () => process.exit(0));
  const cache = new ResourceCache();
  const ads = new AdsServer(cache);
  seedRoute(cache);
  const xds = await listenXds(ads, "127.0.0.1", 0);
  global.gc?.();
  const before = process.memoryUsage();
  process.send?.({ kind: "listening", port: xds.port } satisfies Msg);
  await allConnected(ads, n);
  global.gc?.();
  const after = process.memoryUsage();
  process.send?.({
    kind: "connected",
    rssPerStreamKiB: (after.rss - before.rss) / n / 1024,
    heapPerStreamKiB: (after.heapUsed - before.heapUsed) / n / 1024,
  } satisfies Msg);
  process.on("message", (m: { round: number }) => {
    const cpu0 = process.cpuUsage();
    void ackRound(ads, cache, n, m.round).then(() =>
      process.send?.({ kind: "acked", round: m.round, cpuMs: cpuMs(process.cpuUsage(cpu0)) } satisfies Msg),
    );
  });
}

function stats(xs: number[]) {
  const s = [...xs].sort((a, b) => a - b);
  const q = (p: number) => s[Math.min(s.length - 1, Math.floor(p * (s.length - 1)))]!;
  return { median: q(0.5), p95: q(0.95), min: s[0]!, max: s[s.length - 1]! };
}

async function measure(n: number, k: number): Promise<void> {
  const shares = Array.from({ length: k }, (_, i) => Math.floor(n / k) + (i < n % k ? 1 : 0));
  const servers = shares.map((share) => spawn(["--server", String(share)]));
  const ports = await Promise.all(servers.map((s) => next(s, "listening")));
  const streamProcs = ports.map((p, i) => spawn(["--clients", String(p.port), String(shares[i])]));
  const memory = await Promise.all(servers.map((s) => next(s, "connected")));
  const clientCpu = async () =>
    (await Promise.all(streamProcs.map((c) => (c.send({}), next(c, "cpu"))))).map((m) => m.cpuMs);
  const times: number[] = [];
  const serverCpu: number[] = [];
  const cpuBefore = await clientCpu();
  for (let r = 0; r < ROUNDS; r++) {
    const t0 = performance.now();
    const done = servers.map((s) => next(s, "acked"));
    for (const s of servers) s.send({ round: r });
    const acks = await Promise.all(done);
    times.push(performance.now() - t0);
    serverCpu.push(acks.reduce((sum, a) => sum + a.cpuMs, 0));
  }
  const cpuAfter = await clientCpu();
  for (const c of [...streamProcs, ...servers]) c.kill();
  const t = stats(times);
  const sc = stats(serverCpu);
  const clientPerRound = cpuAfter.reduce((sum, c, i) => sum + c - cpuBefore[i]!, 0) / ROUNDS;
  const rss = memory.reduce((sum, m, i) => sum + m.rssPerStreamKiB * shares[i]!, 0) / n;
  const heap = memory.reduce((sum, m, i) => sum + m.heapPerStreamKiB * shares[i]!, 0) / n;
  console.log(
    `N=${String(n).padStart(5)} servers=${k}  change->all ACKed: median ${t.median.toFixed(1)} ms  p95 ${t.p95.toFixed(1)} ms` +
      `  (min ${t.min.toFixed(1)}, max ${t.max.toFixed(1)}, ${ROUNDS} rounds)` +
      `  cpu per round: servers ${sc.median.toFixed(1)} ms, streams ${clientPerRound.toFixed(1)} ms` +
      `  server memory per stream: rss ${rss.toFixed(1)} KiB, heap ${heap.toFixed(1)} KiB`,
  );
}

if (process.argv[2] === "--clients") {
  await clients(Number(process.argv[3]), Number(process.argv[4]));
} else if (process.argv[2] === "--server") {
  await server(Number(process.argv[3]));
} else {
  const args = process.argv.slice(2);
  const at = args.indexOf("--servers");
  const k = at >= 0 ? Number(args.splice(at, 2)[1]) : 1;
  if (!(k >= 1)) throw new Error("--servers takes a number of servers, at least 1");
  const sizes = args.map(Number).filter((x) => x > 0);
  console.log(`limits (#30): 10,000 streams ACKed in under 150 ms; 50,000 in under 1 s within 1 GiB of one server`);
  for (const n of sizes.length ? sizes : [100, 1000, 10000, 50000]) await measure(n, k);
  process.exit(0);
}
