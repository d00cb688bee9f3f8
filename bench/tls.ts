/**
 * What mutual TLS costs, measured beside cleartext in the same run:
 *  - the API: GetMigration latency on a warm connection (p50, p99), and a new connection's first call;
 *  - xDS: the time for N streams (1,000 by default) to ACK a route change.
 * Each side is a real `pgshift serve` process (engine off) for the API, and the ADS server with the service's own
 * credentials for xDS; the clients are grpc-js, the xDS streams in a child process, 100 to a connection.
 *
 *   npm run bench:tls              # 2000 calls, 1000 streams
 *   npm run bench:tls -- 500 200   # fewer
 */
import { fork } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { adsClientConstructor, AdsServer, listenXds, ResourceCache, TYPE } from "../xds/index.js";
import { ackRounds, allConnected, seedRoute } from "./ack-rounds.js";
import { makeDevPki, serveTlsArgs, type DevPki } from "../src/security/dev-pki.js";
import { watchTls } from "../src/security/tls-material.js";
import { grpcMtlsCredentials } from "../src/security/grpc-certificates.js";
import { migrationClient, mtlsCredentials, unary } from "../test/helpers/grpc-clients.js";
import { createRegistered, localSpec } from "../test/helpers/migrations.js";
import { startServiceProcess, tempDir } from "../test/helpers/service-process.js";

const PER_CONNECTION = 100;
const ROUNDS = 7;
const IDENTITY = "spiffe://bench.example/sa/bench";

function stats(xs: number[]) {
  const s = [...xs].sort((a, b) => a - b);
  const q = (p: number) => s[Math.min(s.length - 1, Math.floor(p * (s.length - 1)))]!;
  return { p50: q(0.5), p95: q(0.95), p99: q(0.99), min: s[0]!, max: s[s.length - 1]! };
}
const ms = (v: number) => v.toFixed(2).padStart(8) + " ms";

function clientCreds(pki: DevPki | undefined): grpc.ChannelCredentials {
  return pki ? mtlsCredentials(pki, "bench") : grpc.credentials.createInsecure();
}

/** The xDS side of the child process: N streams ACKing every response. */
async function streams(port: number, n: number, pkiJson: string): Promise<void> {
  const pki = pkiJson === "-" ? undefined : (JSON.parse(pkiJson) as DevPki);
  const Ctor = adsClientConstructor();
  const conns = Array.from(
    { length: Math.ceil(n / PER_CONNECTION) },
    (_, i) => new Ctor(`127.0.0.1:${port}`, clientCreds(pki), { "grpc.channel_id": i } as grpc.ChannelOptions),
  );
  for (let i = 0; i < n; i++) {
    const call = (conns[Math.floor(i / PER_CONNECTION)] as any).StreamAggregatedResources() as grpc.ClientDuplexStream<
      any,
      any
    >;
    call.on("data", (res: any) =>
      call.write({ type_url: res.type_url, version_info: res.version_info, response_nonce: res.nonce }),
    );
    call.on("error", () => {});
    call.write({ node: { id: `${IDENTITY}/${i}` }, type_url: TYPE.cluster, resource_names: [] });
  }
  process.send?.("connected");
  await new Promise(() => {});
}

async function xdsRound(n: number, pki: DevPki | undefined): Promise<number[]> {
  const cache = new ResourceCache();
  seedRoute(cache);
  // Streams of one identity: the bench measures the transport, not the per-identity bound.
  const ads = new AdsServer(cache);
  const tls = pki
    ? await watchTls({ certFile: pki.server.cert, keyFile: pki.server.key, clientCaFile: pki.ca })
    : undefined;
  const xds = await listenXds(ads, "127.0.0.1", 0, tls ? grpcMtlsCredentials(tls) : undefined);
  const child = fork(
    new URL(import.meta.url).pathname,
    ["--streams", String(xds.port), String(n), pki ? JSON.stringify(pki) : "-"],
    {
      execArgv: ["--import", "tsx"],
      stdio: "inherit",
    },
  );
  await new Promise<void>((res) => child.on("message", () => res()));
  await allConnected(ads, n);
  const times = await ackRounds(ads, cache, n, ROUNDS);
  child.kill();
  ads.close();
  await xds.close();
  tls?.close();
  return times;
}

async function apiRound(
  calls: number,
  dir: string,
  pki: DevPki | undefined,
): Promise<{ warm: number[]; fresh: number[] }> {
  const args = ["--data-dir", join(dir, pki ? "tls" : "plain"), "--engine", "off", "--max-rps-per-identity", "1000000"];
  if (pki) {
    const policy = join(dir, "policy.yaml");
    writeFileSync(policy, `grants:\n  - { identities: ["${IDENTITY}"], databases: ["**"], role: admin }\n`);
    args.push(...serveTlsArgs(pki, policy));
  }
  const svc = await startServiceProcess(args);
  try {
    const client = migrationClient(svc.address, clientCreds(pki));
    const id = (await createRegistered(client, localSpec("bench-db", "bench-src", "bench-tgt"))).id;
    for (let i = 0; i < 200; i++) await unary(client, "GetMigration", { id });
    const warm: number[] = [];
    for (let i = 0; i < calls; i++) {
      const t0 = performance.now();
      await unary(client, "GetMigration", { id });
      warm.push(performance.now() - t0);
    }
    client.close();
    // A new connection per call: the handshake is what TLS adds there.
    const fresh: number[] = [];
    for (let i = 0; i < 50; i++) {
      const c = migrationClient(svc.address, clientCreds(pki), {
        "grpc.channel_id": `fresh-${i}`,
      } as grpc.ChannelOptions);
      const t0 = performance.now();
      await unary(c, "GetMigration", { id });
      fresh.push(performance.now() - t0);
      c.close();
    }
    return { warm, fresh };
  } finally {
    await svc.stop();
  }
}

async function main(): Promise<void> {
  const calls = Number(process.argv[2] ?? 2000);
  const n = Number(process.argv[3] ?? 1000);
  const tmp = tempDir("bench-tls");
  try {
    const pki = await makeDevPki(join(tmp.dir, "pki"), {
      serverNames: ["127.0.0.1"],
      clients: [{ name: "bench", identity: IDENTITY }],
    });
    console.log(
      `API: GetMigration, ${calls} calls on a warm connection, 50 on a new connection each (engine off, embedded store)`,
    );
    const plainApi = await apiRound(calls, tmp.dir, undefined);
    const tlsApi = await apiRound(calls, tmp.dir, pki);
    for (const [name, r] of [
      ["cleartext", plainApi],
      ["mutual TLS", tlsApi],
    ] as const) {
      const w = stats(r.warm);
      const f = stats(r.fresh);
      console.log(
        `  ${name.padEnd(10)} warm p50 ${ms(w.p50)}  p99 ${ms(w.p99)}  (min ${ms(w.min)}, max ${ms(w.max)});  new connection p50 ${ms(f.p50)}  p95 ${ms(f.p95)}`,
      );
    }
    console.log(
      `  mutual TLS adds ${ms(stats(tlsApi.warm).p50 - stats(plainApi.warm).p50)} at p50 on a warm connection, ${ms(stats(tlsApi.fresh).p50 - stats(plainApi.fresh).p50)} to a new connection's first call`,
    );
    console.log(`xDS: ${n} streams ACK a route change, ${ROUNDS} rounds`);
    const plainXds = stats(await xdsRound(n, undefined));
    const tlsXds = stats(await xdsRound(n, pki));
    console.log(`  cleartext  median ${ms(plainXds.p50)}  (min ${ms(plainXds.min)}, max ${ms(plainXds.max)})`);
    console.log(`  mutual TLS median ${ms(tlsXds.p50)}  (min ${ms(tlsXds.min)}, max ${ms(tlsXds.max)})`);
  } finally {
    tmp.remove();
  }
}

if (process.argv[2] === "--streams") void streams(Number(process.argv[3]), Number(process.argv[4]), process.argv[5]!);
else
  main().then(
    () => process.exit(0),
    (e: unknown) => {
      console.error(e);
      process.exit(1);
    },
  );
