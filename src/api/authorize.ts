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

/** Applies the current policy to a call: the identity of its certificate, what it does, and to which database. */
export class Authorizer {
  constructor(private readonly policy: () => Policy) {}

  /**
   * Throws PERMISSION_DENIED naming the identity, the action, the database (and the instance the call reaches, when
   * there is one) when the policy does not allow it.
   */
  require(ctx: HandlerContext, action: Action, database: string, what: string, instance?: string): void {
    const identity = identityOf(ctx);
    if (this.policy().allows(identity, action, database)) return;
    const on = instance ? `database "${database}" (instance ${instance})` : `database "${database}"`;
    throw new PermissionDeniedError(
      `${identity} may not ${what} for ${on}: that needs role ${Policy.roleFor(action)} (to ${VERBS[action]}) on it, and the policy grants ${this.policy().roleOn(identity, database) ?? "no role"}`,
    );
  }

  /** Whether this service runs without a policy (--insecure, no policy file): every caller may do everything. */
  get open(): boolean {
    return this.policy().open;
  }

  mayView(ctx: HandlerContext, database: string): boolean {
    return this.policy().allows(identityOf(ctx), "view", database);
  }
}
