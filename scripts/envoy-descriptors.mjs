// Envoy's .proto files (from @grpc/grpc-js-xds) parsed once, at build, into dist/envoy-descriptors.json: the service
// and the proxy read that instead of parsing a few hundred files at every start (a fifth of a second of CPU, which a
// replica restarted inside a cutover's fenced window should not spend). Run after tsc, which compiled xds/ to dist/.
import { writeFileSync } from "node:fs";
import { ADS_FILE, parseEnvoyProtos, PREBUILT_FILE, SERVED_FILES } from "../dist/xds/envoy-protos.js";

writeFileSync(
  `dist/${PREBUILT_FILE}`,
  JSON.stringify({ ads: parseEnvoyProtos([ADS_FILE]).toJSON(), files: SERVED_FILES, root: parseEnvoyProtos(SERVED_FILES).toJSON() }),
);
