import { existsSync, mkdirSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { claimFolder, dropStaging, markedOwner } from "../src/providers/local/owner-mark.js";
import { tempDir } from "./helpers/service-process.js";
import { moduleOf, runUntilKilled } from "./helpers/killed-child.js";

/** Runs claimFolder(dir, owner) in a child process SIGKILLed at the fault point `env` names. */
function claimKilled(dir: string, owner: string, env: Record<string, string>): Promise<NodeJS.Signals | null> {
  const script = `import { claimFolder } from ${moduleOf("src/providers/local/owner-mark.ts")};
    claimFolder(${JSON.stringify(dir)}, ${JSON.stringify(owner)});`;
  return runUntilKilled(script, env);
}

describe("a target folder never exists without its owner's mark", () => {
  const tmp = tempDir("owner-mark");
  afterAll(() => tmp.remove());

  it.each([
    ["before the mark's own rename", (_name: string) => ({ PGSHIFT_FAULT_KILL_BEFORE_RENAME: "pgshift-owner.json" })],
    ["with the mark made, before the folder's rename", (name: string) => ({ PGSHIFT_FAULT_KILL_BEFORE_CLAIM: name })],
  ])("killed %s: no folder is left, and the same owner's next claim makes it, marked", async (_when, env) => {
    const name = `t${readdirSync(tmp.dir).length}`;
    const dir = join(tmp.dir, name);
    expect(await claimKilled(dir, "m-1", env(name))).toBe("SIGKILL");
    expect(existsSync(dir)).toBe(false);
    claimFolder(dir, "m-1");
    expect(markedOwner(dir)).toBe("m-1");
    expect(readdirSync(tmp.dir).filter((n) => n.startsWith("."))).toEqual([]);
  });

  it("leaves no staging folder once its owner drops it, and a folder without a mark has no owner", async () => {
    const dir = join(tmp.dir, "dropped");
    expect(await claimKilled(dir, "m-2", { PGSHIFT_FAULT_KILL_BEFORE_CLAIM: "dropped" })).toBe("SIGKILL");
    expect(readdirSync(tmp.dir).some((n) => n.includes("dropped.claim-m-2"))).toBe(true);
    dropStaging(dir, "m-2");
    expect(readdirSync(tmp.dir).some((n) => n.includes("dropped"))).toBe(false);
    const foreign = join(tmp.dir, "foreign");
    mkdirSync(foreign);
    expect(markedOwner(foreign)).toBeUndefined();
  });
});
