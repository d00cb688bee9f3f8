import { chmodSync, mkdirSync, realpathSync, statSync, symlinkSync } from "node:fs";
import { dirname, join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { LocalCluster } from "../src/postgres/cluster.js";
import { embeddedBinaries } from "../src/postgres/binaries.js";
import { postgresRunAs } from "../src/postgres/os-user.js";
import { tempDir } from "./helpers/service-process.js";

const asRoot = typeof process.getuid === "function" && process.getuid() === 0;
const mode = (p: string) => (statSync(p).mode & 0o777).toString(8);

/**
 * As root, PostgreSQL runs as an unprivileged user that cannot enter a
 * private (0700) directory such as root's home, where a checkout and its
 * node_modules usually live. We never widen such a directory: binaries in it
 * are copied where that user can reach them, and a cluster folder in it is
 * refused with the directory and the fix named.
 */
describe.skipIf(!asRoot)("paths the PostgreSQL user cannot reach (as root)", () => {
  const tmp = tempDir("private");
  // Stands in for /root: binaries reached only through a 0700 directory.
  const home = join(tmp.dir, "home");
  mkdirSync(home, { mode: 0o700 });
  chmodSync(home, 0o700);
  const clusters: LocalCluster[] = [];

  afterAll(async () => {
    for (const c of clusters) await c.destroy().catch(() => {});
    tmp.remove();
  });

  it("runs a cluster on binaries inside a private directory by copying them beside the cluster, leaving the directory's mode alone", async () => {
    const bin = embeddedBinaries() ?? "/usr/lib/postgresql/15/bin";
    symlinkSync(realpathSync(dirname(bin)), join(home, "native"));
    const privateBin = join(home, "native", "bin");
    const c = await LocalCluster.init({ dir: join(tmp.dir, "clusters", "one"), binDir: privateBin });
    clusters.push(c);
    await c.start();
    expect((await c.query<{ one: number }>("select 1 as one"))[0]!.one).toBe(1);
    expect(c.bin("postgres")).not.toContain(home);
    expect(c.bin("postgres").startsWith(join(tmp.dir, "clusters"))).toBe(true);
    expect(mode(home)).toBe("700");
    // A second cluster from the same binaries reuses the copy.
    const d = await LocalCluster.init({ dir: join(tmp.dir, "clusters", "two"), binDir: privateBin });
    clusters.push(d);
    expect(d.bin("postgres")).toBe(c.bin("postgres"));
  });

  it("refuses a cluster folder inside a private directory, naming it and the fix, and changes nothing", async () => {
    const user = postgresRunAs()!;
    const err = await LocalCluster.init({ dir: join(home, "pgshift", "store") }).then(
      () => undefined,
      (e: Error) => e,
    );
    expect(err?.message).toContain(`PostgreSQL runs as "${user.name}"`);
    expect(err?.message).toContain(`${home} is mode 0700`);
    expect(err?.message).toContain(`chmod o+x ${home}`);
    expect(mode(home)).toBe("700");
  });
});
