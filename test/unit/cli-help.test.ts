import { describe, expect, it } from "vitest";
import { HELP } from "../../src/cli/help.js";
import { CTL_OPTIONS } from "../../src/cli/ctl.js";
import { PLAN_OPTIONS } from "../../src/cli/aws-plan.js";
import { DEMO_OPTIONS } from "../../testing/demo.js";
import { TOOLING_HELP, TOOLING_OPTIONS } from "../../testing/tooling-help.js";
import { DEV_CERTS_OPTIONS } from "../../src/cli/dev-certs.js";
import { HEALTH_OPTIONS } from "../../src/cli/health.js";
import { CONSOLE_OPTIONS } from "../../src/cli/console-proxy.js";
import { LOCAL_OPTIONS } from "../../src/cli/local.js";
import { PROXY_OPTIONS } from "../../src/cli/proxy.js";
import { SERVE_OPTIONS } from "../../src/config.js";

/** The flags a command's help entries describe (for ctl and local: every subcommand's together, as one parser takes them). */
function described(entries: string[], table = HELP): string[] {
  const flags = entries.flatMap((k) =>
    (table[k]?.flags ?? []).map(([f]) => /^--([a-z0-9-]+)/.exec(f)?.[1] ?? `(not a flag: ${f})`),
  );
  return [...new Set(flags)].sort();
}

const parsed = (options: object) => Object.keys(options).sort();
const sub = (command: string, except: string[] = []) =>
  Object.keys(HELP).filter((k) => k === command || (k.startsWith(`${command} `) && !except.includes(k)));

describe("every flag a parser accepts is in its help, and every flag its help names is accepted", () => {
  const cases: [string, string[], object, typeof HELP?][] = [
    ["serve", ["serve"], SERVE_OPTIONS],
    ["ctl", sub("ctl", ["ctl plan"]), CTL_OPTIONS],
    ["ctl plan", ["ctl plan"], PLAN_OPTIONS],
    ["demo (tooling)", ["demo"], DEMO_OPTIONS, TOOLING_HELP],
    ["sample and load (tooling)", ["sample", "load"], TOOLING_OPTIONS, TOOLING_HELP],
    ["dev-certs", ["dev-certs"], DEV_CERTS_OPTIONS],
    ["health", ["health"], HEALTH_OPTIONS],
    ["console", ["console"], CONSOLE_OPTIONS],
    ["local", sub("local"), LOCAL_OPTIONS],
    ["proxy", ["proxy"], PROXY_OPTIONS],
  ];
  for (const [name, entries, options, table] of cases) {
    it(name, () => {
      expect(entries.length).toBeGreaterThan(0);
      expect(described(entries, table)).toEqual(parsed(options));
    });
  }
});
