/**
 * Time from a routing change to its ACK by all of N ADS streams, and the
 * server's memory per stream. The server runs here; the N streams run in a
 * child process (so memory figures are the server's), multiplexed over
 * HTTP/2 connections of 100 streams each, each ACKing every response as a
 * proxy does.
 *
 *   npm run bench:xds                 # N = 100, 1000, 10000
 *   npm run bench:xds -- 100 500      # other sizes
 */
import { fork } from "node:child_process";
import * as grpc from "@grpc/grpc-js";
import { adsClientConstructor, AdsServer, listenXds, ResourceCache, TYPE } from "../xds/index.js";
import { ackRounds, allConnected, seedRoute } from "./ack-rounds.js";

const ROUNDS = 7;
const PER_CONNECTION = 100;

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
    call.write({ node: { id: `bench-${i}` }, type_url: TYPE.cluster, resource_names: [] });
  }
  process.send?.("connected");
  await new Promise(() => {});
}

function stats(xs: number[]) {
  const s = [...xs].sort((a, b) => a - b);
  const q = (p: number) => s[Math.min(s.length - 1, Math.floor(p * (s.length - 1)))]!;
  return { median: q(0.5), p95: q(0.95), min: s[0]!, max: s[s.length - 1]! };
}

async function measure(n: number): Promise<void> {
  const cache = new ResourceCache();
  const ads = new AdsServer(cache);
  seedRoute(cache);
  const xds = await listenXds(ads, "127.0.0.1", 0);
  global.gc?.();
  const before = process.memoryUsage();
  const child = fork(new URL(import.meta.url).pathname, ["--clients", String(xds.port), String(n)], {
    execArgv: ["--import", "tsx"],
    stdio: "inherit",
  });
  await new Promise<void>((res) => child.on("message", () => res()));
  // Every stream has its first response ACKed.
  await allConnected(ads, n);
  global.gc?.();
  const after = process.memoryUsage();
  const times = await ackRounds(ads, cache, n, ROUNDS);
  child.kill();
  ads.close();
  await xds.close();
  const t = stats(times);
  const perStreamKiB = (after.rss - before.rss) / n / 1024;
  const heapPerStreamKiB = (after.heapUsed - before.heapUsed) / n / 1024;
  console.log(
    `N=${String(n).padStart(5)}  change->all ACKed: median ${t.median.toFixed(1)} ms  p95 ${t.p95.toFixed(1)} ms  (min ${t.min.toFixed(1)}, max ${t.max.toFixed(1)}, ${ROUNDS} rounds)` +
      `  server memory per stream: rss ${perStreamKiB.toFixed(1)} KiB, heap ${heapPerStreamKiB.toFixed(1)} KiB`,
  );
}

if (process.argv[2] === "--clients") {
  await clients(Number(process.argv[3]), Number(process.argv[4]));
} else {
  const sizes = process.argv
    .slice(2)
    .map(Number)
    .filter((x) => x > 0);
  for (const n of sizes.length ? sizes : [100, 1000, 10000]) await measure(n);
  process.exit(0);
}
