import { spawn } from "node:child_process";
import { resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { freePort } from "../src/postgres/ports.js";

const ROOT = resolve(import.meta.dirname, "..");

/** Runs `npm run demo` as a user would, and reads its verdict and figures. */
function demo(args: string[], onLine?: (out: string) => void): Promise<{ code: number | null; out: string }> {
  return new Promise((res) => {
    // One-second baseline samples, as the other tests' services take (the same verdicts, each compares a second of commits).
    const env = { ...process.env, PGSHIFT_BASELINE_SAMPLE_MS: "1000" };
    const child = spawn("npm", ["run", "--silent", "demo", "--", ...args], {
      cwd: ROOT,
      env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    child.stdout.on("data", (d: Buffer) => {
      out += d.toString();
      onLine?.(out);
    });
    child.stderr.on("data", (d: Buffer) => (out += d.toString()));
    child.on("exit", (code) => res({ code, out }));
  });
}

describe("npm run demo", () => {
  it("migrates under a live write load and verifies every committed row on the target", async () => {
    const { code, out } = await demo(["--rows", "2000", "--window", "2"]);
    expect(out).toContain("demo: OK");
    expect(code).toBe(0);
    // A clean run says nothing it does not mean: no runtime warning, and no FAIL among checks that let it pass.
    expect(out).not.toMatch(/Warning/);
    expect(out).not.toMatch(/check \S+: FAIL/);
    expect(out).toMatch(/final phase: COMPLETED/);
    const m = /rows verified on the target: (\d+) of (\d+) committed ids present, 0 missing/.exec(out);
    expect(m).not.toBeNull();
    expect(Number(m![1])).toBeGreaterThan(100);
    expect(out).toMatch(
      /CDC events verified: (\d+) inserts streamed for \1 committed rows — 0 lost, 0 duplicated, in commit order; read from billing \(.*\), then billing-aurora \(.*\)\n/,
    );
    const w = /write-unavailability window .*: (\d+) ms/.exec(out);
    console.log(`demo window: ${w?.[1]} ms`);
  });

  it("--schema realistic: preflight refuses the unlogged table, the spec accepts it, and every table compares equal after the cutover, no statement refused", async () => {
    const { code, out } = await demo(["--schema", "realistic", "--rows", "1000", "--window", "2", "--rate", "25"]);
    expect(out).toContain("demo: OK");
    expect(code).toBe(0);
    expect(out).toMatch(/preflight FAIL schema\.unlogged_tables: unlogged: app\.public\.sessions — make them logged/);
    expect(out).toMatch(/preflight refused without schema choices/);
    expect(out).toMatch(/final phase: COMPLETED/);
    expect(out).toMatch(
      /application: (\d+) transactions committed, \d+ failed on a lost connection and were retried, 0 statements refused/,
    );
    expect(out).toMatch(/orders verified on the target: (\d+) of \1 committed present/);
    expect(out).toMatch(/every table compared by checksum: PASS — 2 database\(s\), 8 table\(s\)/);
  });

  it("--rollback brings every committed write, including those made on the target, back to the source; --metrics-port serves /metrics while it runs", async () => {
    const port = await freePort();
    let scraped: Promise<string> | undefined;
    const { code, out } = await demo(
      ["--rollback", "--rows", "2000", "--window", "2", "--metrics-port", String(port)],
      (o) => {
        // Scraped once the migration is under way, while the demo runs.
        if (!scraped && o.includes("5. watching the migration"))
          scraped = fetch(`http://127.0.0.1:${port}/metrics`).then((r) => r.text());
      },
    );
    const metrics = await scraped!;
    expect(metrics).toMatch(/^pgshift_migrations\{phase="PENDING".*\} \d+$/m);
    expect(metrics).toMatch(/^pgshift_migration_phase_seconds\{migration_id="[0-9a-f-]+",database_name="billing-db"/m);
    expect(out).toContain("demo: OK");
    expect(code).toBe(0);
    expect(out).toMatch(/final phase: ROLLED_BACK/);
    expect(out).toMatch(/rows verified on the source after rollback: (\d+) of \1 committed ids present, 0 missing/);
    expect(out).toMatch(
      /CDC events verified: (\d+) inserts streamed for \1 committed rows — 0 lost, 0 duplicated, in commit order; read from billing \(.*\), then billing-aurora \(.*\), then billing \(/,
    );
  });
});
