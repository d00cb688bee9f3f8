import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { parse as parseYaml } from "yaml";
import { InvalidArgumentError } from "../domain/errors.js";

/** One team's webhook: where, in which body format, and the secret its deliveries are signed with. */
export interface Webhook {
  url: string;
  format: "json" | "slack";
  secret: string;
}

export type TeamHooks = Record<string, Webhook[]>;

const TEAM = /^[a-z][a-z0-9-]{0,62}$/;

/**
 * The webhooks file (`serve --notify FILE`), YAML:
 *
 *   teams:
 *     billing:
 *       - url: https://hooks.example/pgshift
 *         format: json            # or slack
 *         secret_file: billing.secret   # relative to this file
 *
 * Secrets live in files of their own, never in the store or the API. Every mistake names where it is.
 */
export function loadHooks(path: string): TeamHooks {
  const fail = (where: string, what: string): never => {
    throw new InvalidArgumentError(`${path}: ${where}: ${what}`);
  };
  let doc: unknown;
  try {
    doc = parseYaml(readFileSync(path, "utf8"));
  } catch (e) {
    fail("file", (e as NodeJS.ErrnoException).code ?? (e as Error).message.split("\n")[0]!);
  }
  const teams = (doc as { teams?: unknown } | null)?.teams;
  if (typeof teams !== "object" || teams === null || Array.isArray(teams))
    fail("teams", "a mapping of team names to lists of webhooks is expected");
  const out: TeamHooks = {};
  for (const [team, hooks] of Object.entries(teams as Record<string, unknown>)) {
    if (!TEAM.test(team)) fail(`teams.${team}`, "a team name as the inventory has it (lowercase, digits, dashes)");
    if (!Array.isArray(hooks) || hooks.length === 0) fail(`teams.${team}`, "a non-empty list of webhooks is expected");
    out[team] = (hooks as unknown[]).map((h, i) => {
      const where = `teams.${team}[${i}]`;
      const o = (h ?? {}) as Record<string, unknown>;
      for (const k of Object.keys(o))
        if (!["url", "format", "secret_file"].includes(k))
          fail(`${where}.${k}`, "unknown key; expected url, format, secret_file");
      let url: URL | undefined;
      try {
        url = new URL(String(o.url));
      } catch {
        fail(`${where}.url`, "an http:// or https:// URL is expected");
      }
      if (url!.protocol !== "https:" && url!.protocol !== "http:")
        fail(`${where}.url`, "an http:// or https:// URL is expected");
      const format = (o.format ?? "json") as string;
      if (format !== "json" && format !== "slack") fail(`${where}.format`, `"${format}" is not json or slack`);
      if (typeof o.secret_file !== "string")
        fail(`${where}.secret_file`, "a file holding the signing secret is required");
      let secret = "";
      try {
        secret = readFileSync(resolve(dirname(path), o.secret_file as string), "utf8").trim();
      } catch (e) {
        fail(
          `${where}.secret_file`,
          `${o.secret_file as string}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
        );
      }
      if (secret.length < 16) fail(`${where}.secret_file`, "the secret must be at least 16 characters");
      return { url: url!.toString(), format: format as Webhook["format"], secret };
    });
  }
  return out;
}
