import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { jsonBody, kindOfPhase, retryDelayMs, slackBody, type Notice } from "../../src/domain/notification.js";
import { loadHooks } from "../../src/notify/hooks-file.js";
import { signature } from "../../src/notify/webhook.js";

describe("the webhooks file", () => {
  const dir = mkdtempSync(join(tmpdir(), "pgshift-hooks-"));
  const file = (name: string, text: string) => {
    writeFileSync(join(dir, name), text);
    return join(dir, name);
  };
  file("s.secret", "0123456789abcdef0123\n");

  it("reads each team's webhooks with their secrets from files beside it", () => {
    const hooks = loadHooks(
      file(
        "ok.yaml",
        "teams:\n  billing:\n    - { url: https://hooks.example/x, format: slack, secret_file: s.secret }\n",
      ),
    );
    expect(hooks).toEqual({
      billing: [{ url: "https://hooks.example/x", format: "slack", secret: "0123456789abcdef0123" }],
    });
  });

  it("names what to fix", () => {
    const bad = (text: string) => () => loadHooks(file("bad.yaml", text));
    expect(bad("teams: []\n")).toThrow(/bad.yaml: teams: a mapping of team names/);
    expect(bad("teams:\n  Billing: [{ url: https://x, secret_file: s.secret }]\n")).toThrow(
      /teams.Billing: a team name/,
    );
    expect(bad("teams:\n  billing: [{ url: ftp://x, secret_file: s.secret }]\n")).toThrow(
      /teams.billing\[0\].url: an http/,
    );
    expect(bad("teams:\n  billing: [{ url: https://x, format: xml, secret_file: s.secret }]\n")).toThrow(
      /format: "xml" is not json or slack/,
    );
    expect(bad("teams:\n  billing: [{ url: https://x, secret_file: none }]\n")).toThrow(/secret_file: none: ENOENT/);
    expect(bad("teams:\n  billing: [{ url: https://x, secret: abc }]\n")).toThrow(
      /teams.billing\[0\].secret: unknown key/,
    );
    file("short.secret", "short");
    expect(bad("teams:\n  billing: [{ url: https://x, secret_file: short.secret }]\n")).toThrow(
      /at least 16 characters/,
    );
  });
});

describe("a notice", () => {
  const n: Notice = {
    id: "migration-9-ab",
    kind: "cutover_done",
    team: "billing",
    at: "2026-12-06T23:00:00.000Z",
    database: "billing-db",
    migrationId: "m1",
    message: "VERIFYING -> COMPLETED",
    windowMs: 181,
  };

  it("says what happened in JSON and in Slack's form", () => {
    expect(JSON.parse(jsonBody(n))).toMatchObject({
      kind: "cutover_done",
      windowMs: 181,
      summary: "billing-db: cutover done, writes were refused for 181 ms",
    });
    expect(JSON.parse(slackBody(n))).toEqual({
      text: "*pgshift* billing-db: cutover done, writes were refused for 181 ms: VERIFYING -> COMPLETED",
    });
  });

  it("comes of the phases that matter only, and retries wait longer each time, to a cap", () => {
    expect([kindOfPhase("QUIESCING"), kindOfPhase("REPLICATING"), kindOfPhase("FAILED")]).toEqual([
      "cutover_started",
      undefined,
      "failed",
    ]);
    expect([1, 2, 3, 20].map(retryDelayMs)).toEqual([1000, 2000, 4000, 300_000]);
  });

  it("is signed over the timestamp and the body", () => {
    const a = signature("0123456789abcdef", 1, "{}");
    expect(a).toMatch(/^[0-9a-f]{64}$/);
    expect(signature("0123456789abcdef", 2, "{}")).not.toBe(a);
    expect(signature("0123456789abcdef", 1, "{ }")).not.toBe(a);
  });
});
