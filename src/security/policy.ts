import { InvalidArgumentError } from "../domain/errors.js";

/** Roles, each allowing what the ones before it allow. */
export const ROLES = ["viewer", "operator", "approver", "admin"] as const;
export type Role = (typeof ROLES)[number];

/** What a call does to a database, as the policy grants it. */
export type Action = "view" | "operate" | "approve" | "administer";

const ROLE_FOR: Record<Action, Role> = {
  view: "viewer",
  operate: "operator",
  approve: "approver",
  administer: "admin",
};

interface Grant {
  identities: RegExp[];
  databases: RegExp[];
  /** Teams (as the inventory names each database's owner) whose databases the grant covers. */
  teams: RegExp[];
  role: Role;
}

interface Reach {
  identities: RegExp[];
  databases: RegExp[];
}

/**
 * A pattern: exact, or with `*` for any run of characters but "/" and `**` for any run at all, so that
 * `spiffe://corp/team/billing/*` names billing's service accounts and nothing deeper.
 */
export function pattern(p: string): RegExp {
  const body = p
    .split("**")
    .map((part) =>
      part
        .split("*")
        .map((s) => s.replace(/[.+?^${}()|[\]\\]/g, "\\$&"))
        .join("[^/]*"),
    )
    .join(".*");
  return new RegExp(`^${body}$`);
}

const matches = (ps: RegExp[], v: string) => ps.some((p) => p.test(v));

/**
 * Who may do what to which database: grants map identities to a role on databases; `proxies` say which databases'
 * listeners and clusters a proxy identity receives over xDS. Nothing is allowed that no grant allows.
 */
export class Policy {
  private constructor(
    private readonly grants: Grant[],
    private readonly reach: Reach[],
    /** Only for --insecure without a policy file: every caller may do everything. */
    readonly open = false,
  ) {}

  /** The policy of a service run with --insecure and no policy file. */
  static allowAll(): Policy {
    return new Policy([], [], true);
  }

  /** A policy file's document (policy-file.ts reads the YAML); any mistake is an error naming where it is and what is expected. */
  static fromDocument(doc: unknown, source: string): Policy {
    const fail = (where: string, what: string): never => {
      throw new InvalidArgumentError(`${source}: ${where}: ${what}`);
    };
    if (typeof doc !== "object" || doc === null || Array.isArray(doc))
      fail("top level", "a mapping with `grants` (and optionally `proxies`) is expected");
    const top = doc as Record<string, unknown>;
    for (const k of Object.keys(top))
      if (k !== "grants" && k !== "proxies") fail(k, "unknown key; expected grants or proxies");
    const list = (where: string, v: unknown): RegExp[] => {
      if (
        !Array.isArray(v) ||
        v.length === 0 ||
        !v.every((x) => typeof x === "string" && x.length > 0 && x.length <= 512)
      ) {
        fail(where, "a non-empty list of non-empty strings (exact names or patterns with * and **) is expected");
      }
      return (v as string[]).map(pattern);
    };
    /** `either`: keys of which one at least must be there (the others may be left out). */
    const entries = (key: "grants" | "proxies", keys: string[], either: string[] = ["databases"]) => {
      const v = top[key] ?? [];
      if (!Array.isArray(v)) fail(key, "a list is expected");
      return (v as unknown[]).map((e, i) => {
        const where = `${key}[${i}]`;
        if (typeof e !== "object" || e === null || Array.isArray(e))
          fail(where, `a mapping with ${keys.join(", ")} is expected`);
        const o = e as Record<string, unknown>;
        for (const k of Object.keys(o))
          if (!keys.includes(k)) fail(`${where}.${k}`, `unknown key; expected ${keys.join(", ")}`);
        if (either.every((k) => o[k] === undefined)) fail(where, `${either.join(" or ")} is required`);
        return {
          where,
          o,
          identities: list(`${where}.identities`, o.identities),
          databases: o.databases === undefined ? [] : list(`${where}.databases`, o.databases),
        };
      });
    };
    const grants = entries("grants", ["identities", "databases", "teams", "role"], ["databases", "teams"]).map(
      ({ where, o, identities, databases }) => {
        if (!ROLES.includes(o.role as Role))
          fail(`${where}.role`, `one of ${ROLES.join(", ")} is expected; got ${JSON.stringify(o.role)}`);
        const teams = o.teams === undefined ? [] : list(`${where}.teams`, o.teams);
        return { identities, databases, teams, role: o.role as Role };
      },
    );
    const reach = entries("proxies", ["identities", "databases"]).map(({ identities, databases }) => ({
      identities,
      databases,
    }));
    return new Policy(grants, reach);
  }

  /** The highest role an identity holds on a database (owned by `team`, when the inventory says so), if any. */
  roleOn(identity: string, database: string, team?: string): Role | undefined {
    if (this.open) return "admin";
    let best = -1;
    for (const g of this.grants) {
      if (
        matches(g.identities, identity) &&
        (matches(g.databases, database) || (team !== undefined && matches(g.teams, team)))
      )
        best = Math.max(best, ROLES.indexOf(g.role));
    }
    return best < 0 ? undefined : ROLES[best];
  }

  /** Whether grants name teams at all: only then is a database's owner worth looking up. */
  get byTeam(): boolean {
    return this.grants.some((g) => g.teams.length > 0);
  }

  allows(identity: string, action: Action, database: string, team?: string): boolean {
    const role = this.roleOn(identity, database, team);
    return role !== undefined && ROLES.indexOf(role) >= ROLES.indexOf(ROLE_FOR[action]);
  }

  /** Whether a proxy of this identity receives the database's listener and cluster. */
  proxyMayReach(identity: string, database: string): boolean {
    return this.open || this.reach.some((r) => matches(r.identities, identity) && matches(r.databases, database));
  }

  /** The role an action needs, for error messages. */
  static roleFor(action: Action): Role {
    return ROLE_FOR[action];
  }
}
