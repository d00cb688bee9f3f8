import { Code } from "@connectrpc/connect";
import { PgshiftError } from "../domain/errors.js";

/** A provider fault: names the instance and says what to do. */
export class ProviderError extends PgshiftError {
  constructor(
    code: Code,
    readonly instance: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(code, message, options);
  }
}

export class UnknownInstanceError extends ProviderError {
  constructor(instance: string, hint: string) {
    super(Code.NotFound, instance, `no instance "${instance}": ${hint}`);
  }
}

export class InstanceUnreachableError extends ProviderError {
  constructor(instance: string, where: string, cause: unknown) {
    super(
      Code.Unavailable,
      instance,
      `cannot connect to ${instance} at ${where}: ${(cause as Error).message}; check that it is running and reachable`,
      {
        cause,
      },
    );
  }
}

export class CredentialsRejectedError extends ProviderError {
  constructor(instance: string, user: string, cause: unknown) {
    super(
      Code.FailedPrecondition,
      instance,
      `${instance} rejected the credentials of user "${user}"; register the instance again with the right password`,
      {
        cause,
      },
    );
  }
}

export class VersionMismatchError extends ProviderError {
  constructor(instance: string, message: string) {
    super(Code.FailedPrecondition, instance, message);
  }
}

export class ReplicaDownError extends ProviderError {
  constructor(instance: string, detail: string) {
    super(
      Code.Unavailable,
      instance,
      `the replica ${instance} is not running (${detail}); it must be recreated or restarted before the migration can go on`,
    );
  }
}

export class ReplayTimeoutError extends ProviderError {
  constructor(instance: string, lsn: string, reached: string | null, timeoutMs: number) {
    super(
      Code.DeadlineExceeded,
      instance,
      `${instance} did not replay up to ${lsn} within ${timeoutMs} ms (reached ${reached ?? "nothing"}); check replication and retry`,
    );
  }
}

export class InvalidInstanceStateError extends ProviderError {
  constructor(instance: string, message: string) {
    super(Code.FailedPrecondition, instance, message);
  }
}
