import { execFile } from "node:child_process";
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import { HELP } from "../src/cli/help.js";
import { startServiceProcess, tempDir, type ServiceProcess } from "./helpers/service-process.js";

const run = promisify(execFile);
const ROOT = resolve(import.meta.dirname, "..");

/**
 * The service as a user gets it: `npm pack`, the tarball installed into an empty folder, and its `pgshift` bin run
 * with plain node. dist/ was built by the suite's global setup (what `prepack` builds), so packing skips scripts.
 */
/**
 * The packages that run in production are the package's dependencies: every package with code in the bundle is one
 * of `dependencies` or what they bring (so `npm audit --omit=dev` and licence scanners see it), every direct
 * dependency has code in the bundle (nothing declared that does not run), and each has its licence on record.
 */
describe("the bundle's packages are the declared dependencies", () => {
  it("bundles what `dependencies` brings and nothing of the dev tools, each in the notices and the SBOM", async () => {
    const sbom = JSON.parse(readFileSync(join(ROOT, "dist/sbom.cdx.json"), "utf8")) as {
      components: { name: string; version: string; licenses: unknown[] }[];
    };
    const bundled = sbom.components.map((c) => `${c.name}@${c.version}`);
    expect(bundled.length).toBeGreaterThan(50);
    const { stdout } = await run("npm", ["ls", "--omit=dev", "--all", "--parseable", "--long"], {
      cwd: ROOT,
      maxBuffer: 16 << 20,
    });
    const production = new Set(
      stdout
        .split("\n")
        .slice(1)
        .filter(Boolean)
        .map((l) => l.split(":")[1]),
    );
    expect(bundled.filter((b) => !production.has(b))).toEqual([]);
    const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as {
      dependencies: Record<string, string>;
    };
    const names = new Set(sbom.components.map((c) => c.name));
    expect(Object.keys(pkg.dependencies).filter((d) => !names.has(d))).toEqual([]);
    for (const dev of ["vitest", "@grpc/grpc-js-xds", "aws-sdk-client-mock", "pg-logical-replication", "esbuild"])
      expect(names.has(dev), dev).toBe(false);
    expect(sbom.components.filter((c) => c.licenses.length === 0)).toEqual([]);
    const notices = readFileSync(join(ROOT, "dist/THIRD-PARTY-NOTICES.md"), "utf8");
    expect(bundled.filter((b) => !notices.includes(`\n## ${b}\n`))).toEqual([]);
  });
});

describe("the packed package: installed from its tarball, run with plain node", () => {
  const tmp = tempDir("pack");
  let svc: ServiceProcess | undefined;
  afterAll(async () => {
    await svc?.stop();
    tmp.remove();
  });

  it("installs, answers --help for every command and subcommand, serves and answers a health check", async () => {
    const npm = (args: string[], cwd: string) =>
      run("npm", args, { cwd, env: { ...process.env, npm_config_update_notifier: "false" }, maxBuffer: 16 << 20 });
    await npm(["pack", "--ignore-scripts", "--pack-destination", tmp.dir], ROOT);
    const tgz = readdirSync(tmp.dir).find((f) => f.endsWith(".tgz"));
    expect(tgz).toMatch(/^pgshift-.*\.tgz$/);
    // No test or demo tooling ships: not as a file of the package, not as a module inside the bundle.
    const listed = (await run("tar", ["-tzf", join(tmp.dir, tgz!)])).stdout.split("\n").filter(Boolean);
    expect(listed.filter((f) => /(^|\/)(testing|test|bench)\//.test(f.replace(/^package\//, "")))).toEqual([]);
    const shipped = listed
      .filter((f) => /^package\/dist\/.*\.mjs$/.test(f))
      .map((f) => join(ROOT, f.replace(/^package\//, "")));
    expect(shipped.length).toBeGreaterThan(1);
    const tooling = [
      "class RdsEmulator",
      "class WriteLoad",
      "class RealisticLoad",
      "class CdcConsumer",
      "function createSampleSource",
      "function demoCommand",
    ];
    for (const file of shipped) {
      const text = readFileSync(file, "utf8");
      expect(
        tooling.filter((t) => text.includes(t)),
        file,
      ).toEqual([]);
    }
    // And the modules the bundle's maps name are all ours or dependencies: none from testing/.
    const maps = listed
      .filter((f) => f.endsWith(".mjs.map"))
      .map((f) => JSON.parse(readFileSync(join(ROOT, f.replace(/^package\//, "")), "utf8")) as { sources: string[] });
    expect(maps.flatMap((m) => m.sources).filter((s) => s.includes("testing/"))).toEqual([]);
    // What ships of other people's code is declared: notices and an SBOM for every package in the bundle.
    expect(listed).toEqual(
      expect.arrayContaining(["package/dist/THIRD-PARTY-NOTICES.md", "package/dist/sbom.cdx.json"]),
    );
    const app = join(tmp.dir, "app");
    mkdirSync(app);
    writeFileSync(join(app, "package.json"), JSON.stringify({ name: "pgshift-user", private: true }));
    // From npm's cache where it has the packages (the suite's own `npm ci` filled it); the registry otherwise.
    // Optional packages left out: PostgreSQL's server binaries come from the system here.
    await npm(
      [
        "install",
        "--prefer-offline",
        "--omit=optional",
        "--ignore-scripts",
        "--no-audit",
        "--no-fund",
        join(tmp.dir, tgz!),
      ],
      app,
    );
    const bin = join(app, "node_modules/.bin/pgshift");
    // No TypeScript loader anywhere: plain node on what the package ships.
    const pgshift = (args: string[]) => run(process.execPath, [bin, ...args], { cwd: app });

    const top = await pgshift(["--help"]);
    for (const cmd of Object.keys(HELP).filter((k) => !k.includes(" "))) expect(top.stdout).toContain(`  ${cmd} `);
    // Side by side: each is a process of its own, as a user would start it.
    const helps = await Promise.all(
      Object.keys(HELP).map(async (path) => ({ path, stdout: (await pgshift([...path.split(" "), "--help"])).stdout })),
    );
    for (const { path, stdout } of helps) {
      expect(stdout, path).toContain(`usage: pgshift ${HELP[path]!.usage}`);
      expect(stdout, path).toContain(`example:\n  ${HELP[path]!.example}`);
      for (const [flag] of HELP[path]!.flags ?? []) expect(stdout, path).toContain(flag);
    }

    svc = await startServiceProcess(["--data-dir", join(tmp.dir, "data")], {}, bin);
    const health = await pgshift(["health", "--api", `http://${svc.address}`]);
    expect(JSON.parse(health.stdout)).toEqual({ status: "SERVING" });
    // A service that is not there: unavailable, said so, non-zero.
    const down = await pgshift(["health", "--api", "http://127.0.0.1:1"]).catch(
      (e: { code: number; stderr: string }) => e,
    );
    expect(down).toMatchObject({ code: 69, stderr: expect.stringMatching(/^Unavailable: /) });
  });

  it("runs from dist/ alone, with no node_modules anywhere above it, as the image runs it", async () => {
    const bare = join(tmp.dir, "bare");
    for (const f of ["pgshift.mjs", "pgshift.mjs.map", "chunks", "envoy-descriptors.json"])
      cpSync(join(ROOT, "dist", f), join(bare, "dist", f), { recursive: true });
    let dir = bare;
    for (; dirname(dir) !== dir; dir = dirname(dir)) expect(existsSync(join(dir, "node_modules")), dir).toBe(false);
    const bin = join(bare, "dist/pgshift.mjs");
    const alone = await startServiceProcess(["--data-dir", join(tmp.dir, "bare-data")], {}, bin);
    try {
      const health = await run(process.execPath, [bin, "health", "--api", `http://${alone.address}`], { cwd: bare });
      expect(JSON.parse(health.stdout)).toEqual({ status: "SERVING" });
    } finally {
      await alone.stop();
    }
  });
});
