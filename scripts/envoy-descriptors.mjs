// Envoy's .proto files (from @grpc/grpc-js-xds) parsed once, at build, into dist/envoy-descriptors.json: the service
// and the proxy read that instead of parsing a few hundred files at every start (a fifth of a second of CPU, which a
// replica restarted inside a cutover's fenced window should not spend). xds/envoy-protos.ts is compiled for the
// occasion beside the bundle (so that its packages resolve from node_modules as the bundle's do), then removed.
import { rmSync, writeFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
import { build } from "esbuild";

const compiled = "dist/.envoy-protos.build.mjs";
await build({
  entryPoints: ["xds/envoy-protos.ts"],
  outfile: compiled,
  bundle: true,
  packages: "external",
  platform: "node",
  format: "esm",
  logLevel: "warning",
});
const { prebuiltDescriptors, PREBUILT_FILE } = await import(pathToFileURL(compiled).href).finally(() =>
  rmSync(compiled),
);

writeFileSync(`dist/${PREBUILT_FILE}`, JSON.stringify(prebuiltDescriptors()));
