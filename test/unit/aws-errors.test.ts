import {
  CreateDBClusterCommand,
  CreateDBInstanceCommand,
  DBClusterNotFoundFault,
  DBClusterQuotaExceededFault,
  DBInstanceNotFoundFault,
  DescribeDBClustersCommand,
  DescribeDBInstancesCommand,
  InsufficientDBInstanceCapacityFault,
  InvalidDBClusterStateFault,
  InvalidDBInstanceStateFault,
  ModifyDBInstanceCommand,
  PromoteReadReplicaDBClusterCommand,
  RDSClient,
  RDSServiceException,
  type DBInstance,
} from "@aws-sdk/client-rds";
import { mockClient } from "aws-sdk-client-mock";
import { afterAll, beforeEach, describe, expect, it } from "vitest";
import { decide, failureInfo, type RetryPolicy } from "../../src/engine/failure-policy.js";
import type { PhaseName } from "../../src/domain/phases.js";
import { FailurePolicy } from "../../src/gen/migration/v1/migration_pb.js";
import { awsError } from "../../src/providers/aws/aws-errors.js";
import { OWNER_TAG, RdsControl } from "../../src/providers/aws/rds-control.js";
import {
  CredentialsRejectedError,
  InstanceUnreachableError,
  InvalidInstanceStateError,
  ReplicaDownError,
  UnknownInstanceError,
} from "../../src/providers/errors.js";

const rds = mockClient(RDSClient);
const control = () =>
  new RdsControl(new RDSClient({ region: "eu-west-1" }), {
    pollMs: 1,
    notFoundGraceMs: 50,
    sleep: () => Promise.resolve(),
  });
const meta = { $metadata: { httpStatusCode: 400 } };
/** A fault of the kind the SDK raises for an error code it has no class for (AccessDenied, Throttling...). */
const generic = (name: string, status: number) =>
  new RDSServiceException({
    name,
    $fault: status >= 500 ? "server" : "client",
    message: `${name} from AWS`,
    $metadata: { httpStatusCode: status },
  });

const SOURCE: DBInstance = {
  DBInstanceIdentifier: "billing",
  DBInstanceArn: "arn:aws:rds:eu-west-1:123456789012:db:billing",
  DBInstanceStatus: "available",
  EngineVersion: "15.8",
  VpcSecurityGroups: [{ VpcSecurityGroupId: "sg-app" }],
};
const POLICY: RetryPolicy = {
  maxAttempts: 3,
  initialBackoffMs: 200,
  maxBackoffMs: 1000,
  failurePolicy: FailurePolicy.ROLLBACK,
};

/** The local provider's errors for the same conditions. */
const LOCAL = {
  noRoom: new InvalidInstanceStateError("billing", "the machine has no room for the replica"),
  refused: new CredentialsRejectedError("billing", "postgres", new Error("password authentication failed")),
  unreachable: new InstanceUnreachableError("billing", "127.0.0.1:5432", new Error("ECONNREFUSED")),
};

/** What the engine does with an error in a phase, on the first attempt and on the last. */
const outcome = (phase: PhaseName, e: unknown) =>
  [1, POLICY.maxAttempts].map((attempt) => decide(phase, failureInfo(e), attempt, POLICY).kind);

/** Runs a provider call on the mocked SDK and returns what it threw. */
async function thrown(call: () => Promise<unknown>): Promise<unknown> {
  try {
    await call();
  } catch (e) {
    return e;
  }
  throw new Error("the call succeeded; a failure was expected");
}

describe("AWS faults reach the engine as the local provider's typed errors (aws-sdk-client-mock)", () => {
  beforeEach(() => {
    rds.reset();
    rds.on(DescribeDBInstancesCommand, { DBInstanceIdentifier: "billing" }).resolves({ DBInstances: [SOURCE] });
    rds
      .on(DescribeDBInstancesCommand, { DBInstanceIdentifier: "billing-aurora-1" })
      .rejects(new DBInstanceNotFoundFault({ message: "no such instance", ...meta }));
    rds.on(DescribeDBClustersCommand).rejects(new DBClusterNotFoundFault({ message: "no such cluster", ...meta }));
  });
  afterAll(() => rds.restore());

  const replica = () =>
    control().ensureReplica(
      {
        sourceId: "billing",
        clusterId: "billing-aurora",
        instanceId: "billing-aurora-1",
        instanceClass: "db.r6g.large",
        engineVersion: "15.8",
        owner: "m-1",
      },
      60_000,
    );
  const promoting = () => {
    rds.on(DescribeDBClustersCommand).resolves({
      DBClusters: [
        {
          DBClusterIdentifier: "billing-aurora",
          Status: "available",
          ReplicationSourceIdentifier: SOURCE.DBInstanceArn,
          TagList: [{ Key: OWNER_TAG, Value: "m-1" }],
        },
      ],
    });
    return control().promote("billing-aurora", 60_000);
  };

  /**
   * Each row: a step's AWS call failing with a fault AWS really sends, and the local provider's error for the same
   * condition. The engine must decide the same for both, on the first attempt and the last: fail, fall back (the
   * source unfenced), retry, or roll back, as the failure policy says for that phase.
   */
  const rows: Array<{
    phase: PhaseName;
    what: string;
    call: () => Promise<unknown>;
    fault: () => void;
    local: Error;
    expected: string[];
    says: RegExp;
  }> = [
    {
      phase: "PROVISIONING",
      what: "CreateDBCluster over the account's cluster quota",
      call: replica,
      fault: () =>
        rds.on(CreateDBClusterCommand).rejects(new DBClusterQuotaExceededFault({ message: "quota reached", ...meta })),
      local: LOCAL.noRoom,
      expected: ["fail", "fail"],
      says: /rds:CreateDBCluster.*DBClusterQuotaExceededFault.*raise the quota/,
    },
    {
      phase: "PROVISIONING",
      what: "CreateDBInstance with no capacity for the class",
      call: replica,
      fault: () => {
        rds.on(CreateDBClusterCommand).resolves({});
        rds
          .on(CreateDBInstanceCommand)
          .rejects(new InsufficientDBInstanceCapacityFault({ message: "no capacity", ...meta }));
      },
      local: LOCAL.noRoom,
      expected: ["fail", "fail"],
      says: /rds:CreateDBInstance.*spec\.aws\.instance_class/,
    },
    {
      phase: "PROVISIONING",
      what: "CreateDBCluster refused to the service's role",
      call: replica,
      fault: () => rds.on(CreateDBClusterCommand).rejects(generic("AccessDenied", 403)),
      local: LOCAL.refused,
      expected: ["fail", "fail"],
      says: /AWS refused rds:CreateDBCluster.*iam-policy\.json/,
    },
    {
      phase: "PROVISIONING",
      what: "CreateDBCluster throttled past the SDK's own retries",
      call: replica,
      fault: () => rds.on(CreateDBClusterCommand).rejects(generic("Throttling", 400)),
      local: LOCAL.unreachable,
      expected: ["retry", "fail"],
      says: /rds:CreateDBCluster did not go through now.*Throttling/,
    },
    {
      phase: "PREFLIGHT",
      what: "the source named does not exist",
      call: () => control().source("no-such"),
      fault: () =>
        rds
          .on(DescribeDBInstancesCommand, { DBInstanceIdentifier: "no-such" })
          .rejects(new DBInstanceNotFoundFault({ message: "no such instance", ...meta })),
      local: new UnknownInstanceError("no-such", "register it first"),
      expected: ["fail", "fail"],
      says: /"no-such" does not exist/,
    },
    {
      phase: "QUIESCING",
      what: "the network fence's ModifyDBInstance while the instance is busy",
      call: () => control().networkFence("billing", "sg-deny", 60_000),
      fault: () =>
        rds
          .on(ModifyDBInstanceCommand)
          .rejects(new InvalidDBInstanceStateFault({ message: "instance is modifying", ...meta })),
      local: LOCAL.unreachable,
      expected: ["retry", "fall_back"],
      says: /rds:ModifyDBInstance did not go through now.*InvalidDBInstanceStateFault/,
    },
    {
      phase: "QUIESCING",
      what: "the network fence refused to the service's role",
      call: () => control().networkFence("billing", "sg-deny", 60_000),
      fault: () => rds.on(ModifyDBInstanceCommand).rejects(generic("AccessDenied", 403)),
      local: LOCAL.refused,
      expected: ["fall_back", "fall_back"],
      says: /AWS refused rds:ModifyDBInstance/,
    },
    {
      phase: "PROMOTING",
      what: "PromoteReadReplicaDBCluster while the cluster is busy",
      call: promoting,
      fault: () =>
        rds
          .on(PromoteReadReplicaDBClusterCommand)
          .rejects(new InvalidDBClusterStateFault({ message: "cluster is modifying", ...meta })),
      local: new ReplicaDownError("billing-aurora", "postmaster not running"),
      expected: ["retry", "roll_back"],
      says: /rds:PromoteReadReplicaDBCluster did not go through now/,
    },
    {
      phase: "PROMOTING",
      what: "PromoteReadReplicaDBCluster refused to the service's role",
      call: promoting,
      fault: () => rds.on(PromoteReadReplicaDBClusterCommand).rejects(generic("AccessDenied", 403)),
      local: new InvalidInstanceStateError("billing-aurora", "not a replica"),
      expected: ["roll_back", "roll_back"],
      says: /AWS refused rds:PromoteReadReplicaDBCluster/,
    },
    {
      phase: "ROLLING_BACK",
      what: "restoring the source's security groups fails for good",
      call: () => control().networkUnfence("billing", ["sg-app", "sg-ops"], 60_000),
      fault: () => rds.on(ModifyDBInstanceCommand).rejects(generic("AccessDenied", 403)),
      local: LOCAL.refused,
      // Getting traffic back to the source is never given up on.
      expected: ["retry", "retry"],
      says: /AWS refused rds:ModifyDBInstance/,
    },
  ];

  for (const r of rows) {
    it(`${r.phase}: ${r.what} → ${r.expected.join(", then ")}, as locally`, async () => {
      r.fault();
      const e = await thrown(r.call);
      expect((e as Error).message).toMatch(r.says);
      expect(outcome(r.phase, e)).toEqual(r.expected);
      expect(outcome(r.phase, e)).toEqual(outcome(r.phase, r.local));
    });
  }

  it("maps the faults by kind, keeps the fault as the cause, and passes its own errors through", () => {
    const code = (e: unknown) => failureInfo(awsError(e, "rds:X")).code;
    expect(code(generic("AccessDenied", 403))).toBe("PermissionDenied");
    expect(code(generic("InvalidClientTokenId", 403))).toBe("PermissionDenied");
    expect(code(generic("KMSKeyNotAccessibleFault", 400))).toBe("PermissionDenied");
    expect(code(new DBClusterNotFoundFault({ message: "x", ...meta }))).toBe("NotFound");
    expect(code(generic("DBClusterAlreadyExistsFault", 400))).toBe("AlreadyExists");
    expect(code(generic("StorageQuotaExceeded", 400))).toBe("FailedPrecondition");
    expect(code(generic("InvalidParameterCombination", 400))).toBe("InvalidArgument");
    expect(code(generic("ThrottlingException", 400))).toBe("Unavailable");
    expect(code(generic("ExpiredToken", 400))).toBe("Unavailable");
    expect(code(generic("SomethingNew", 503))).toBe("Unavailable");
    expect(code(Object.assign(new Error("connect ECONNREFUSED 10.0.0.1:443"), { code: "ECONNREFUSED" }))).toBe(
      "Unavailable",
    );
    expect(code(generic("SomethingNew", 400))).toBe("Unknown");
    const fault = generic("AccessDenied", 403);
    expect((awsError(fault, "rds:X") as Error).cause).toBe(fault);
    const ours = new UnknownInstanceError("x", "y");
    expect(awsError(ours, "rds:X")).toBe(ours);
  });
});
