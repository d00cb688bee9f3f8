#!/usr/bin/env node
/**
 * The tooling that is not the product: the demo, a sample source, an application write load. It runs from the
 * repository (`npm run demo`, `npm run tooling -- sample …`), never from the service's bundle, package or image, and
 * product code may not import it (`npm run lint:deps`).
 */
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { InvalidArgumentError, PgshiftError } from "../src/domain/errors.js";
import { LocalProvider } from "../src/providers/local/local-provider.js";
import { createSampleSource, readAppCredentials } from "./sample.js";
import { WriteLoad } from "./workload/write-load.js";
import { demoCommand } from "./demo.js";
import { TOOLING_HELP, TOOLING_OPTIONS } from "./tooling-help.js";
import { nonNegative } from "../src/cli/flag-values.js";

function usage(): string {
  return [
    "usage: npm run tooling -- <command> [flags]   (npm run demo -- [flags] for the demo)",
    "",
    ...Object.entries(TOOLING_HELP).map(([k, h]) => `  ${k.padEnd(7)} ${h.summary}\n          ${h.usage}`),
    "",
  ].join("\n");
}

async function tooling(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  if (command && (rest.includes("--help") || rest.includes("-h")) && TOOLING_HELP[command]) {
    const h = TOOLING_HELP[command];
    process.stdout.write(
      `${h.summary}\n\nusage: ${h.usage}\n\n${(h.flags ?? []).map(([f, m]) => `  ${f.padEnd(28)} ${m}`).join("\n")}\n\nexample: ${h.example}\n`,
    );
    return;
  }
  if (command === "demo") return demoCommand(rest);
  if (command !== "sample" && command !== "load") {
    process.stdout.write(usage());
    if (command && command !== "help" && command !== "--help") process.exitCode = 2;
    return;
  }
  const { values } = parseArgs({ args: rest, options: TOOLING_OPTIONS, strict: true });
  const name = values.name;
  if (!name) throw new InvalidArgumentError("--name is required");
  const dataDir = resolve(values["data-dir"] ?? process.env.PGSHIFT_DATA_DIR ?? ".pgshift");
  const provider = new LocalProvider(resolve(process.env.PGSHIFT_LOCAL_DIR ?? join(dataDir, "local")));
  const out = (v: unknown) => void process.stdout.write(JSON.stringify(v, null, 2) + "\n");
  if (command === "sample") {
    const { cluster, app } = await createSampleSource(provider, name, { rows: nonNegative("rows", values.rows, 1000) });
    return out({ name, port: cluster.port, app: { user: app.user, database: app.database } });
  }
  const cluster = provider.cluster({ id: name });
  const load = new WriteLoad({
    host: "127.0.0.1",
    port: cluster.port,
    ...readAppCredentials(cluster),
    ratePerSec: nonNegative("rate", values.rate, 100),
  });
  load.start();
  await new Promise((r) => setTimeout(r, nonNegative("seconds", values.seconds, 30) * 1000));
  await load.stop();
  out({
    committed: load.committed.length,
    failures: load.failures.length,
    longestGapMs: Math.round(load.longestGapMs),
  });
}

tooling(process.argv.slice(2)).catch((e: unknown) => {
  const msg = e instanceof PgshiftError ? e.rawMessage : e instanceof Error ? e.message : String(e);
  process.stderr.write(`pgshift tooling: ${msg}\n`);
  process.exit(1);
});
