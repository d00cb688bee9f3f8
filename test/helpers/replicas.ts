import { readFileSync } from "node:fs";
import { join } from "node:path";
import { LocalCluster } from "../../src/postgres/cluster.js";
import { startServiceProcess, type ServiceProcess } from "./service-process.js";

/**
 * Two control-plane replicas on one store, as a deployment runs them: the first runs the embedded store in its data
 * dir (a postgres of its own, which outlives a SIGKILL of the service), the second is pointed at it.
 */
export class ReplicaPair {
  readonly dirs: [string, string];
  readonly replicas: ServiceProcess[] = [];
  private storeUrl = "";

  /** `args(i)`: replica i's flags besides --data-dir and --database-url. */
  constructor(
    root: string,
    private readonly args: (i: number) => string[],
  ) {
    this.dirs = [join(root, "r1"), join(root, "r2")];
  }

  /** Starts (or restarts) replica i. */
  async start(i: number): Promise<ServiceProcess> {
    const args = ["--data-dir", this.dirs[i]!, ...this.args(i)];
    const r = await startServiceProcess(i === 0 ? args : [...args, "--database-url", this.storeUrl]);
    if (i === 0) this.storeUrl = this.store().url("pgshift");
    this.replicas[i] = r;
    return r;
  }

  store(): LocalCluster {
    return LocalCluster.load(join(this.dirs[0], "store"))!;
  }

  identity(i: number): string {
    return readFileSync(join(this.dirs[i]!, "replica-id"), "utf8").trim();
  }

  /** Which replica (0 or 1) holds the lease now, waiting up to 5 s for someone to. */
  async holderOf(lease: string): Promise<number> {
    for (let i = 0; i < 100; i++) {
      const rows = await this.store().query<{ holder: string }>(
        "select holder from leases where name = $1 and expires_at > now()",
        [lease],
        "pgshift",
      );
      if (rows[0]) return rows[0].holder === this.identity(0) ? 0 : 1;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`nobody holds lease ${lease}`);
  }

  async close(): Promise<void> {
    for (const r of this.replicas) if (r?.alive()) await r.stop();
    await this.store()
      ?.destroy()
      .catch(() => {});
  }
}
