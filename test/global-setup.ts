import { execFileSync } from "node:child_process";
import { resolve } from "node:path";

/**
 * Builds dist/ once before the suite, as `npm run build` does: the tests run the service as it ships (plain node on
 * the bundle, with Envoy's descriptors prebuilt), which also starts faster than through a TypeScript loader, as a
 * restarted replica must.
 */
export default function setup(): void {
  // Each test project runs the global setup; the build is needed once per run.
  const g = globalThis as { pgshiftBuilt?: boolean };
  if (g.pgshiftBuilt) return;
  g.pgshiftBuilt = true;
  const root = resolve(import.meta.dirname, "..");
  for (const script of ["scripts/bundle.mjs", "scripts/envoy-descriptors.mjs"])
    execFileSync(process.execPath, [resolve(root, script)], { cwd: root, stdio: "inherit" });
  // The web console the service serves on its API port.
  execFileSync(
    process.execPath,
    [resolve(root, "node_modules/vite/bin/vite.js"), "build", "--config", "web/vite.config.ts"],
    {
      cwd: root,
      stdio: "inherit",
    },
  );
}
