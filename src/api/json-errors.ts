import type { DescField, DescMessage } from "@bufbuild/protobuf";

const ENUM_ERROR = /cannot decode enum ([\w.]+) from JSON: (.*)$/;

/** The paths (snake_case, as the API's JSON takes them) of every field under `desc` whose type is the enum named. */
function enumFieldPaths(
  desc: DescMessage,
  enumName: string,
  prefix = "",
  seen = new Set<string>(),
): Array<{ path: string; field: DescField }> {
  if (seen.has(desc.typeName)) return [];
  seen.add(desc.typeName);
  const out: Array<{ path: string; field: DescField }> = [];
  for (const f of desc.fields) {
    const path = prefix + f.name;
    if (f.enum?.typeName === enumName) out.push({ path, field: f });
    if (f.message) out.push(...enumFieldPaths(f.message, enumName, `${path}.`, seen));
  }
  return out;
}

/**
 * protobuf-es says which enum a JSON value is not a name of, not which field it was given for: the message is
 * rewritten to name the request's field(s) of that enum, the value, and the names it takes. Any other message is
 * returned as it is.
 */
export function explainJsonError(message: string, input: DescMessage | undefined): string {
  const m = ENUM_ERROR.exec(message);
  if (!m || !input) return message;
  const fields = enumFieldPaths(input, m[1]!);
  if (fields.length === 0) return message;
  const names = fields[0]!.field.enum!.values.map((v) => v.name).join(", ");
  return `${fields.map((f) => f.path).join(" or ")}: ${m[2]} is not a ${m[1]} value; use one of ${names}`;
}
