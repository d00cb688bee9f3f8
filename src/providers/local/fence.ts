/**
 * Fencing by pg_hba.conf: a block of rules put in front of whatever the file
 * holds, admitting only our admin role; replication connections are not
 * matched by "all" and keep flowing. Unfencing removes exactly that block, so
 * the file is byte for byte what it was.
 */
const BEGIN = "# pgshift fence begin: new client connections are refused during a migration cutover";
const END = "# pgshift fence end";

export function isFencedHba(text: string): boolean {
  return text.startsWith(BEGIN + "\n");
}

export function fenceHba(text: string, adminUser: string): string {
  if (isFencedHba(text)) return text;
  const quoted = `"${adminUser.replace(/"/g, '""')}"`;
  return [
    BEGIN,
    `host all ${quoted} 127.0.0.1/32 scram-sha-256`,
    `host all ${quoted} ::1/128 scram-sha-256`,
    "host all all all reject",
    "local all all reject",
    END,
    text,
  ].join("\n");
}

export function unfenceHba(text: string): string {
  if (!isFencedHba(text)) return text;
  const end = text.indexOf(END + "\n");
  return end < 0 ? text : text.slice(end + END.length + 1);
}
