import { TYPE, type AdsServer, type ResourceCache } from "../xds/index.js";
import { clusterResource } from "../src/routing/resources.js";

const route = (port: number) => ({
  databaseName: "billing-db",
  endpoint: { host: "127.0.0.1", port },
  version: String(port),
  listenerPort: 15432,
});

/** Puts the first version of billing-db's cluster in the cache, for streams to subscribe to. */
export function seedRoute(cache: ResourceCache): void {
  cache.set(TYPE.cluster, [{ name: "billing-db", value: clusterResource(route(1)) }]);
}

/** Resolves once n streams have ACKed their first response. */
export function allConnected(ads: AdsServer, n: number): Promise<void> {
  return new Promise<void>((res) => {
    const check = () =>
      ads.connected().filter((s) => s.acks.get(TYPE.cluster)?.ackedVersion !== undefined).length >= n
        ? res()
        : setTimeout(check, 20);
    check();
  });
}

/** Puts round r's new endpoint for billing-db in the cache; resolves once all n streams ACKed it. */
export function ackRound(ads: AdsServer, cache: ResourceCache, n: number, r: number): Promise<void> {
  const v = cache.set(TYPE.cluster, [{ name: "billing-db", value: clusterResource(route(2 + r)) }]);
  let acked = 0;
  return new Promise<void>((res) => {
    const on = (_s: unknown, type: string, version: number) => {
      if (type === TYPE.cluster && version >= v && ++acked === n) {
        ads.off("ack", on);
        res();
      }
    };
    ads.on("ack", on);
  });
}

/** For each round, a new endpoint for billing-db, and the time until all n streams ACKed it. */
export async function ackRounds(ads: AdsServer, cache: ResourceCache, n: number, rounds: number): Promise<number[]> {
  const times: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const t0 = performance.now();
    await ackRound(ads, cache, n, r);
    times.push(performance.now() - t0);
  }
  return times;
}
