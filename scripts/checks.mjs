// The static checks of `npm test`, side by side (two cores: the typechecker and the linter each take tens of
// seconds alone): typecheck, ESLint, Prettier, the folder rules and buf lint. Each one's output is printed whole,
// in this order; the exit code is non-zero if any failed.
import { spawn } from "node:child_process";
import process from "node:process";

const checks = [
  ["typecheck", "npx", ["tsc", "--noEmit", "-p", "."]],
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
