/**
 * Enough of IAM's policy evaluation to hold pgshift's policy to every call it makes, as AWS would: Allow and Deny
 * statements, actions and resources with wildcards, and the condition operators and keys the policy uses. A policy
 * that uses anything else is refused outright, so that nothing in it goes unchecked.
 */

export interface IamPolicy {
  Version: string;
  Statement: IamStatement[];
}

interface IamStatement {
  Sid?: string;
  Effect: "Allow" | "Deny";
  Action: string | string[];
  Resource: string | string[];
  Condition?: Record<string, Record<string, string | string[]>>;
}

/** One call as IAM judges it: the action, the resource it acts on, and the condition keys the request carries. */
export interface IamRequest {
  action: string;
  resource: string;
  /** aws:RequestTag/K, aws:ResourceTag/K, aws:TagKeys (a list), kms:ViaService… */
  context: Record<string, string | string[]>;
}

export interface IamDecision {
  allowed: boolean;
  /** The statement that allowed or denied it. */
  sid?: string;
}

const OPERATORS = new Set([
  "StringEquals",
  "StringLike",
  "StringNotEquals",
  "Null",
  "ForAllValues:StringEquals",
  "ForAnyValue:StringEquals",
]);

const asList = (v: string | string[]) => (Array.isArray(v) ? v : [v]);

/** IAM's wildcards: `*` any run, `?` one character. */
function glob(pattern: string, value: string, caseInsensitive = false): boolean {
  const body = pattern
    .replace(/[.+^${}()|[\]\\]/g, "\\$&")
    .replace(/\*/g, ".*")
    .replace(/\?/g, ".");
  return new RegExp(`^${body}$`, caseInsensitive ? "i" : "").test(value);
}

function conditionHolds(op: string, key: string, wanted: string[], context: IamRequest["context"]): boolean {
  const have = context[key];
  switch (op) {
    case "Null":
      // "true": the key is absent; "false": present.
      return wanted.includes(String(have === undefined));
    case "StringEquals":
      return have !== undefined && !Array.isArray(have) && wanted.includes(have);
    case "StringNotEquals":
      return have === undefined || (!Array.isArray(have) && !wanted.includes(have));
    case "StringLike":
      return have !== undefined && !Array.isArray(have) && wanted.some((w) => glob(w, have));
    case "ForAllValues:StringEquals":
      return asList(have ?? []).every((v) => wanted.includes(v));
    case "ForAnyValue:StringEquals":
      return asList(have ?? []).some((v) => wanted.includes(v));
  }
  throw new Error(`condition operator ${op} is not one this evaluator knows`);
}

function matches(s: IamStatement, r: IamRequest): boolean {
  if (!asList(s.Action).some((a) => glob(a, r.action, true))) return false;
  if (!asList(s.Resource).some((p) => glob(p, r.resource))) return false;
  return Object.entries(s.Condition ?? {}).every(([op, keys]) =>
    Object.entries(keys).every(([k, v]) => conditionHolds(op, k, asList(v), r.context)),
  );
}

/** Refuses a policy this evaluator could misjudge: an operator it does not know, a field it does not read. */
export function checkPolicy(p: IamPolicy): IamPolicy {
  if (p.Version !== "2012-10-17") throw new Error(`policy Version must be 2012-10-17; got ${p.Version}`);
  for (const s of p.Statement) {
    for (const k of Object.keys(s))
      if (!["Sid", "Effect", "Action", "Resource", "Condition"].includes(k))
        throw new Error(`statement ${s.Sid}: ${k} is not read here`);
    for (const op of Object.keys(s.Condition ?? {}))
      if (!OPERATORS.has(op)) throw new Error(`statement ${s.Sid}: condition operator ${op} is not known here`);
  }
  return p;
}

/** An explicit Deny wins; otherwise an Allow that matches allows; otherwise the call is denied implicitly. */
export function evaluate(p: IamPolicy, r: IamRequest): IamDecision {
  const deny = p.Statement.find((s) => s.Effect === "Deny" && matches(s, r));
  if (deny) return { allowed: false, sid: deny.Sid };
  const allow = p.Statement.find((s) => s.Effect === "Allow" && matches(s, r));
  return allow ? { allowed: true, sid: allow.Sid } : { allowed: false };
}

/** The condition keys of a resource's tags, and of the tags a request sets. */
export function tagContext(
  resourceTags: { Key: string; Value: string }[],
  requestTags?: { Key: string; Value: string }[],
): Record<string, string | string[]> {
  const ctx: Record<string, string | string[]> = {};
  for (const t of resourceTags) ctx[`aws:ResourceTag/${t.Key}`] = t.Value;
  if (requestTags) {
    for (const t of requestTags) ctx[`aws:RequestTag/${t.Key}`] = t.Value;
    ctx["aws:TagKeys"] = requestTags.map((t) => t.Key);
  }
  return ctx;
}
