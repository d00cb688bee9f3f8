import { execFileSync } from "node:child_process";
import { createRequire } from "node:module";
import { resolve } from "node:path";

/**
 * Builds dist/ once before the suite: the tests run the service as it ships
 * (plain node on compiled JavaScript), which also starts faster than through
 * a TypeScript loader, as a restarted replica must.
 */
export default function setup(): void {
  // Each test project runs the global setup; the build is needed once per run.
  const g = globalThis as { pgshiftBuilt?: boolean };
  if (g.pgshiftBuilt) return;
  g.pgshiftBuilt = true;
  const root = resolve(import.meta.dirname, "..");
  const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc");
  execFileSync(process.execPath, [tsc, "-p", resolve(root, "tsconfig.build.json")], { cwd: root, stdio: "inherit" });
  execFileSync(process.execPath, [resolve(root, "scripts/bundle.mjs")], { cwd: root, stdio: "inherit" });
}
