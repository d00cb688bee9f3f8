import { spawn, type ChildProcess } from "node:child_process";
import { rmSync } from "node:fs";
import { newWorkDir } from "../../src/postgres/reach.js";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";

const ROOT = resolve(import.meta.dirname, "../..");
// The service as it ships: plain node on the bundle in dist/ (built by test/global-setup.ts), one process, so SIGKILL really kills it.
const MAIN = join(ROOT, "dist/pgshift.mjs");

export interface ServiceProcess {
  port: number;
  xdsPort: number;
  address: string;
  child: ChildProcess;
  stderr: () => string;
  /** Whether the process has not exited. */
  alive: () => boolean;
  /** SIGTERM, then waits for the exit code. */
  stop(): Promise<number | null>;
  /** SIGKILL, the way a crash would end it. */
  kill(): Promise<void>;
}

export function tempDir(prefix: string): { dir: string; remove: () => void } {
  const dir = newWorkDir(`pgshift-${prefix}-`);
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Starts `pgshift serve` as a real process (the bundle in dist/ unless `main` names another) and waits for its listening line. */
export async function startServiceProcess(
  args: string[],
  env: NodeJS.ProcessEnv = {},
  main = MAIN,
): Promise<ServiceProcess> {
  // Cleartext unless the test brings its own certificates.
  const security = args.includes("--tls-cert") ? [] : ["--insecure"];
  const child = spawn(
    process.execPath,
    ["--enable-source-maps", main, "serve", "--port", "0", "--xds-port", "0", ...security, ...args],
    {
      cwd: ROOT,
      // One-second baseline samples: half the default, two seconds less per migration, the same verdicts (each compares a second of commits).
      // Without the machine's NODE_EXTRA_CA_CERTS, as the image runs: node reads that whole bundle before any code of
      // ours (50 ms a start here), and nothing the service reaches in a test needs a public CA.
      env: {
        ...process.env,
        NODE_EXTRA_CA_CERTS: undefined,
        PGSHIFT_LOG_LEVEL: "warn",
        PGSHIFT_BASELINE_SAMPLE_MS: "1000",
        ...env,
      },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  let err = "";
  child.stderr!.on("data", (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((res) => child.once("exit", (code) => res(code)));
  const { port, xdsPort } = await new Promise<{ port: number; xdsPort: number }>((res, rej) => {
    const rl = createInterface({ input: child.stdout! });
    rl.on("line", (line) => {
      try {
        const v = JSON.parse(line) as { listening?: { port: number; xdsPort: number } };
        if (v.listening) res(v.listening);
      } catch {
        // not our line
      }
    });
    void exited.then((code) => rej(new Error(`service exited (${code}) before listening: ${err}`)));
    setTimeout(() => rej(new Error(`service did not listen within 60s: ${err}`)), 60_000);
  });
  return {
    port,
    xdsPort,
    address: `127.0.0.1:${port}`,
    child,
    stderr: () => err,
    alive: () => child.exitCode === null && child.signalCode === null,
    async stop() {
      child.kill("SIGTERM");
      return exited;
    },
    async kill() {
      child.kill("SIGKILL");
      await exited;
    },
  };
}
