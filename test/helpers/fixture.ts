import { join } from "node:path";
import { afterAll, beforeAll } from "vitest";
import { LocalCluster } from "../../src/postgres/cluster.js";
import { XdsTcpProxy } from "../../src/proxy/xds-tcp-proxy.js";
import { LocalProvider } from "../../src/providers/local/local-provider.js";
import { migrationClient, type AnyClient } from "./grpc-clients.js";
import { startServiceProcess, tempDir, type ServiceProcess } from "./service-process.js";
import { destroyClusters } from "./clusters.js";

export interface ServiceFixture {
  readonly dir: string;
  readonly provider: LocalProvider;
  svc: ServiceProcess;
  client: AnyClient;
  /** The application's sidecar: the local xDS proxy, connected to the service. */
  proxy: XdsTcpProxy;
  /** Stopped first when the suite ends (consumers, loads). */
  readonly owned: Array<{ stop(): Promise<unknown> }>;
  /** The service's command-line arguments. */
  readonly args: string[];
  /** SIGKILL, as a crash would, then the same command again; `whileDown` runs in between. */
  restart(whileDown?: () => Promise<void>): Promise<void>;
}

/**
 * For one describe block: a service process on its own data dir (extra
 * arguments from `args`), a client, and a proxy; everything torn down after,
 * including the clusters the tests made and a store a killed service left.
 */
export function useService(
  prefix: string,
  nodeId: string,
  args: (dir: string) => Promise<string[]> = async () => [],
  env: NodeJS.ProcessEnv = {},
): ServiceFixture {
  const tmp = tempDir(prefix);
  let fullArgs: string[] = [];
  const f = {
    dir: tmp.dir,
    provider: new LocalProvider(join(tmp.dir, "local")),
    owned: [],
    get args() {
      return fullArgs;
    },
    async restart(whileDown?: () => Promise<void>) {
      await f.svc.kill();
      f.client.close();
      await whileDown?.();
      f.svc = await startServiceProcess(fullArgs, env);
      f.client = migrationClient(f.svc.address);
    },
  } as unknown as ServiceFixture;

  beforeAll(async () => {
    fullArgs = ["--data-dir", tmp.dir, ...(await args(tmp.dir))];
    f.svc = await startServiceProcess(fullArgs, env);
    f.client = migrationClient(f.svc.address);
    f.proxy = new XdsTcpProxy({ xds: `127.0.0.1:${f.svc.xdsPort}`, nodeId, listenPort: () => 0 });
    await f.proxy.start();
  });

  afterAll(async () => {
    for (const o of f.owned) await o.stop().catch(() => {});
    await f.proxy?.stop();
    f.client?.close();
    if (f.svc) await f.svc.stop();
    await destroyClusters(f.provider);
    await LocalCluster.load(join(tmp.dir, "store"))?.destroy();
    tmp.remove();
  });

  return f;
}
