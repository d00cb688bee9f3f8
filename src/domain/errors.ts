import { Code, ConnectError } from "@connectrpc/connect";

/**
 * The service's error hierarchy. Each error carries the gRPC code it maps to,
 * and its message says what to do next, because operators read these in grpcurl.
 */
export class PgshiftError extends ConnectError {
  constructor(code: Code, message: string, options?: { cause?: unknown }) {
    // Being a ConnectError means handlers can throw it as is and the client sees this code and message.
    super(message, code, undefined, undefined, options?.cause);
    // connect recognises its errors by name ("ConnectError"), so the class name goes elsewhere.
    this.kind = new.target.name;
  }
  readonly kind: string;

  /**
   * ConnectError matches any error named "ConnectError" on instanceof, and
   * subclasses inherit that: without this, every PgshiftError would pass for
   * every subclass. Our classes use the prototype chain, as usual.
   */
  static override [Symbol.hasInstance](v: unknown): boolean {
    return Function.prototype[Symbol.hasInstance].call(this, v);
  }
}

export class InvalidArgumentError extends PgshiftError {
  constructor(message: string) {
    super(Code.InvalidArgument, message);
  }
}

export class NotFoundError extends PgshiftError {
  constructor(message: string) {
    super(Code.NotFound, message);
  }
}

export class AlreadyExistsError extends PgshiftError {
  constructor(message: string) {
    super(Code.AlreadyExists, message);
  }
}

export class FailedPreconditionError extends PgshiftError {
  constructor(message: string) {
    super(Code.FailedPrecondition, message);
  }
}

export class PermissionDeniedError extends PgshiftError {
  constructor(message: string) {
    super(Code.PermissionDenied, message);
  }
}

export class UnauthenticatedError extends PgshiftError {
  constructor(message: string) {
    super(Code.Unauthenticated, message);
  }
}

export class UnavailableError extends PgshiftError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(Code.Unavailable, message, options);
  }
}

export class DeadlineExceededError extends PgshiftError {
  constructor(message: string) {
    super(Code.DeadlineExceeded, message);
  }
}

export class UnimplementedError extends PgshiftError {
  constructor(message: string) {
    super(Code.Unimplemented, message);
  }
}

/** A lease this replica held was taken over; its writes must not land. */
export class LeaseLostError extends PgshiftError {
  constructor(message: string) {
    super(Code.Aborted, message);
  }
}

/**
 * A failure that must not be retried nor answered automatically, whatever the
 * phase (even ROLLING_BACK): the migration holds, paused, until an operator
 * has fixed what the message names and resumes it.
 */
export class HoldForOperatorError extends PgshiftError {
  constructor(message: string) {
    super(Code.FailedPrecondition, message);
  }
}

export class InternalError extends PgshiftError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(Code.Internal, message, options);
  }
}

/**
 * The result, or undefined when the thing asked about does not exist
 * (NOT_FOUND). Any other failure (unreachable, refused, timed out) is thrown:
 * a side that does not answer is not a side that is gone.
 */
export async function unlessGone<T>(p: Promise<T>): Promise<T | undefined> {
  try {
    return await p;
  } catch (e) {
    if (ConnectError.from(e).code === Code.NotFound) return undefined;
    throw e;
  }
}

/** Turns anything thrown inside a handler into the ConnectError the client should see. */
export function toConnectError(err: unknown): ConnectError {
  if (err instanceof ConnectError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new ConnectError(`internal error: ${message}`, Code.Internal);
}
