import { GetMetricDataCommand, type CloudWatchClient, type MetricDataResult } from "@aws-sdk/client-cloudwatch";

/** What CloudWatch says of a replication from an RDS instance to its Aurora replica cluster (latest minute). */
export interface CloudWatchFigures {
  /** RDSToAuroraPostgreSQLReplicaLag (seconds), of the replica cluster. */
  replicaLagSeconds?: number;
  /** OldestReplicationSlotLag (bytes), of the source: WAL its most lagging slot retains. */
  oldestSlotLagBytes?: number;
  /** TransactionLogsDiskUsage (bytes), of the source. */
  walDiskBytes?: number;
}

const QUERIES = [
  { id: "replicalag", name: "RDSToAuroraPostgreSQLReplicaLag", on: "cluster" },
  { id: "slotlag", name: "OldestReplicationSlotLag", on: "source" },
  { id: "waldisk", name: "TransactionLogsDiskUsage", on: "source" },
] as const;

/**
 * One GetMetricData call for the three figures, over the last ten minutes at one-minute resolution (CloudWatch's
 * for RDS): the latest value of each, absent where there is none yet.
 */
export async function replicationFigures(
  cw: CloudWatchClient,
  sourceId: string,
  clusterId: string,
  now = new Date(),
): Promise<CloudWatchFigures> {
  const r = await cw.send(
    new GetMetricDataCommand({
      StartTime: new Date(now.getTime() - 10 * 60_000),
      EndTime: now,
      ScanBy: "TimestampDescending",
      MetricDataQueries: QUERIES.map((q) => ({
        Id: q.id,
        MetricStat: {
          Metric: {
            Namespace: "AWS/RDS",
            MetricName: q.name,
            Dimensions: [
              q.on === "cluster"
                ? { Name: "DBClusterIdentifier", Value: clusterId }
                : { Name: "DBInstanceIdentifier", Value: sourceId },
            ],
          },
          Period: 60,
          Stat: "Maximum",
        },
      })),
    }),
  );
  return figuresOf(r.MetricDataResults ?? []);
}

/** The source's storage as CloudWatch has it: FreeStorageSpace and TransactionLogsDiskUsage, in bytes (latest minute). */
export async function storageFigures(
  cw: CloudWatchClient,
  sourceId: string,
  now = new Date(),
): Promise<{ freeBytes?: number; walBytes?: number }> {
  const r = await cw.send(
    new GetMetricDataCommand({
      StartTime: new Date(now.getTime() - 10 * 60_000),
      EndTime: now,
      ScanBy: "TimestampDescending",
      MetricDataQueries: [
        { id: "free", name: "FreeStorageSpace", stat: "Minimum" },
        { id: "waldisk", name: "TransactionLogsDiskUsage", stat: "Maximum" },
      ].map((q) => ({
        Id: q.id,
        MetricStat: {
          Metric: {
            Namespace: "AWS/RDS",
            MetricName: q.name,
            Dimensions: [{ Name: "DBInstanceIdentifier", Value: sourceId }],
          },
          Period: 60,
          Stat: q.stat,
        },
      })),
    }),
  );
  const results = r.MetricDataResults ?? [];
  return { freeBytes: latestOf(results, "free"), walBytes: latestOf(results, "waldisk") };
}

function latestOf(results: MetricDataResult[], id: string): number | undefined {
  const r = results.find((x) => x.Id === id);
  if (!r?.Values?.length) return undefined;
  let best = 0;
  r.Timestamps?.forEach((t, i) => (t.getTime() > (r.Timestamps![best]?.getTime() ?? 0) ? (best = i) : undefined));
  return r.Values[best];
}

/** The latest value of each query's series (timestamps descending, or not: the newest one is taken). */
export function figuresOf(results: MetricDataResult[]): CloudWatchFigures {
  const latest = (id: string) => latestOf(results, id);
  return {
    replicaLagSeconds: latest("replicalag"),
    oldestSlotLagBytes: latest("slotlag"),
    walDiskBytes: latest("waldisk"),
  };
}

/** The figures for a check's record: what the platform's own monitoring says beside what SQL measured. */
export function describeFigures(f: CloudWatchFigures): string {
  const mb = (b: number) => `${(b / (1 << 20)).toFixed(1)} MiB`;
  const parts = [
    f.replicaLagSeconds !== undefined ? `RDSToAuroraPostgreSQLReplicaLag ${f.replicaLagSeconds.toFixed(2)}s` : "",
    f.oldestSlotLagBytes !== undefined ? `OldestReplicationSlotLag ${mb(f.oldestSlotLagBytes)}` : "",
    f.walDiskBytes !== undefined ? `TransactionLogsDiskUsage ${mb(f.walDiskBytes)}` : "",
  ].filter(Boolean);
  return `CloudWatch: ${parts.length ? parts.join(", ") : "no datapoints yet"}`;
}
