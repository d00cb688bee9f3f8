import { describe, expect, it } from "vitest";
import { Policy } from "../../src/security/policy.js";

describe("a policy grant by team", () => {
  const policy = Policy.fromDocument(
    {
      grants: [
        { identities: ["spiffe://corp/team/billing/*"], teams: ["billing"], role: "approver" },
        { identities: ["spiffe://corp/sre/*"], databases: ["**"], teams: ["billing"], role: "viewer" },
      ],
    },
    "policy.yaml",
  );

  it("covers the databases the inventory gives the team, whatever their names, and nothing else", () => {
    expect(policy.byTeam).toBe(true);
    expect(policy.allows("spiffe://corp/team/billing/deployer", "approve", "ledger-db", "billing")).toBe(true);
    expect(policy.allows("spiffe://corp/team/billing/deployer", "view", "ledger-db", "payments")).toBe(false);
    // Without the inventory's word (an unregistered database) a team grant reaches nothing.
    expect(policy.allows("spiffe://corp/team/billing/deployer", "view", "ledger-db")).toBe(false);
    expect(policy.roleOn("spiffe://corp/sre/oncall", "x-db", "payments")).toBe("viewer");
  });

  it("needs databases or teams, and names a mistake", () => {
    const bad = (grant: object) => () => Policy.fromDocument({ grants: [grant] }, "policy.yaml");
    expect(bad({ identities: ["a"], role: "viewer" })).toThrow(
      "policy.yaml: grants[0]: databases or teams is required",
    );
    expect(bad({ identities: ["a"], teams: [], role: "viewer" })).toThrow(/grants\[0\].teams: a non-empty list/);
    expect(bad({ identities: ["a"], team: ["x"], role: "viewer" })).toThrow(
      /grants\[0\].team: unknown key; expected identities, databases, teams, role/,
    );
  });
});
