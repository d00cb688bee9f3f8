import { parse as parseYaml } from "yaml";
import { InvalidArgumentError } from "../domain/errors.js";
import { Policy } from "./policy.js";

/**
 * Parses a policy file (YAML). Apart from policy.ts so that the YAML parser, a quarter of a megabyte of code, is loaded
 * only by a service given a policy file, not by every start (a replica restarted inside a cutover must be back fast).
 */
export function parsePolicy(text: string, source: string): Policy {
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (e) {
    throw new InvalidArgumentError(`${source}: not YAML: ${(e as Error).message}`);
  }
  return Policy.fromDocument(doc, source);
}
