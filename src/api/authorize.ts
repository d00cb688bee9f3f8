import type { HandlerContext } from "@connectrpc/connect";
import { PermissionDeniedError } from "../domain/errors.js";
import { Policy, type Action } from "../security/policy.js";
import { identityOf } from "./caller.js";

const VERBS: Record<Action, string> = {
  view: "view",
  operate: "operate",
  approve: "approve or roll back",
  administer: "finalize or abort",
};

/** The owning team of each named database the inventory knows. */
export type TeamsOf = (databases: string[]) => Promise<Map<string, string>>;

/**
 * Applies the current policy to a call: the identity of its certificate, what it does, and to which database, and
 * through the inventory to which team's database (a grant may name teams rather than database names).
 */
export class Authorizer {
  constructor(
    private readonly policy: () => Policy,
    private readonly teamsOf: TeamsOf = async () => new Map(),
  ) {}

  private async teams(databases: string[]): Promise<Map<string, string>> {
    return this.policy().byTeam ? this.teamsOf(databases) : new Map();
  }

  /**
   * Throws PERMISSION_DENIED naming the identity, the action, the database (its team, and the instance the call
   * reaches, when there are) when the policy does not allow it.
   */
  async require(ctx: HandlerContext, action: Action, database: string, what: string, instance?: string): Promise<void> {
    await this.requireAll(ctx, action, [database], what, instance);
  }

  /** The same for several databases at once: the caller needs the action on every one. */
  async requireAll(ctx: HandlerContext, action: Action, databases: string[], what: string, instance?: string) {
    const identity = identityOf(ctx);
    const policy = this.policy();
    const teams = await this.teams(databases);
    for (const database of databases) {
      const team = teams.get(database);
      if (policy.allows(identity, action, database, team)) continue;
      const on = `database "${database}"${team ? ` (team ${team}${instance ? `, instance ${instance}` : ""})` : instance ? ` (instance ${instance})` : ""}`;
      throw new PermissionDeniedError(
        `${identity} may not ${what} for ${on}: that needs role ${Policy.roleFor(action)} (to ${VERBS[action]}) on it, and the policy grants ${policy.roleOn(identity, database, team) ?? "no role"}`,
      );
    }
  }

  /** Whether this service runs without a policy (--insecure, no policy file): every caller may do everything. */
  get open(): boolean {
    return this.policy().open;
  }

  /** The caller's identity and its role on each of these databases it has one on. */
  async roles(ctx: HandlerContext, databases: string[]): Promise<{ identity: string; roles: Record<string, string> }> {
    const identity = identityOf(ctx);
    const policy = this.policy();
    const teams = await this.teams(databases);
    const roles: Record<string, string> = {};
    for (const d of databases) {
      const role = policy.roleOn(identity, d, teams.get(d));
      if (role) roles[d] = role;
    }
    return { identity, roles };
  }

  /** Which of these databases the caller may view. */
  async viewable(ctx: HandlerContext, databases: string[]): Promise<(database: string) => boolean> {
    const identity = identityOf(ctx);
    const policy = this.policy();
    const teams = await this.teams([...new Set(databases)]);
    return (database) => policy.allows(identity, "view", database, teams.get(database));
  }
}
