/**
 * The folder rules of docs/architecture.md, checked by `npm test` (npm run lint:deps).
 * Data flows one way: cli -> service -> config -> api -> engine -> proxy ->
 * (checks, cdc, replication, routing, notify) -> providers -> store ->
 * (telemetry, postgres, security) -> domain -> (gen, support). testing/ (the demo, the AWS emulator, loads) sits outside:
 * it may use src/, src/ may not import it. A folder imports only folders below it;
 * folders on one level do not import one another; xds/ knows nothing of src/.
 */
const LEVELS = [
  // The ground floor: generated code, and small helpers of Node's own kind (waits, signals, atomic files).
  ["src/gen", "src/support"],
  ["src/domain"],
  ["src/telemetry", "src/postgres", "src/security"],
  ["src/store"],
  ["src/providers"],
  ["src/checks", "src/cdc", "src/replication", "src/routing", "src/notify"],
  // The local Envoy stand-in reads the resources routing builds.
  ["src/proxy"],
  ["src/engine"],
  ["src/api"],
  ["src/config\\.ts"],
  ["src/service"],
  ["src/cli"],
];

const esc = (p) => `^${p}(/|$)`;
const layerRules = LEVELS.flatMap((level, i) =>
  level.flatMap((folder) => {
    const above = LEVELS.slice(i + 1).flat();
    const siblings = level.filter((f) => f !== folder);
    if (above.length + siblings.length === 0) return [];
    return {
      name: `layer:${folder.replace(/\\/g, "")}`,
      comment: `${folder} may import only what lies below it (docs/architecture.md): not ${[...above, ...siblings].join(", ").replace(/\\/g, "")}`,
      severity: "error",
      from: { path: esc(folder) },
      to: { path: [...above, ...siblings].map(esc) },
    };
  }),
);

module.exports = {
  forbidden: [
    {
      name: "no-circular",
      comment: "Modules must not import one another in a loop.",
      severity: "error",
      from: {},
      to: { circular: true },
    },
    {
      name: "xds-is-generic",
      comment: "xds/ is a generic xDS management server: it imports nothing from src/.",
      severity: "error",
      from: { path: "^xds/" },
      to: { path: "^src/" },
    },
    {
      name: "domain-is-the-core",
      comment: "src/domain imports nothing of ours but itself and generated code.",
      severity: "error",
      from: { path: "^src/domain/" },
      to: { path: "^(src|xds)/", pathNot: "^src/(domain|gen)/" },
    },
    {
      name: "gen-is-generated",
      comment: "Generated code depends on nothing hand-written.",
      severity: "error",
      from: { path: "^src/gen/" },
      to: { path: "^(src|xds)/", pathNot: "^src/gen/" },
    },
    {
      name: "no-test-code-in-the-product",
      comment:
        "src/ and xds/ never import from test/, bench/ or testing/ (the demo, the AWS emulator, loads, samples).",
      severity: "error",
      from: { path: "^(src|xds)/" },
      to: { path: "^(test|bench|testing)/" },
    },
    ...layerRules,
  ],
  options: {
    doNotFollow: { path: "node_modules" },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: "tsconfig.json" },
  },
};
