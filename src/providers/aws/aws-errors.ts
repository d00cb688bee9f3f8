import { Code } from "@connectrpc/connect";
import {
  AlreadyExistsError,
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
  PermissionDeniedError,
  PgshiftError,
  UnavailableError,
} from "../../domain/errors.js";

/**
 * AWS's faults as the engine's typed errors, so that its failure policy reads them as it reads the local provider's:
 * what no retry can fix (a resource that does not exist, a permission not granted, a quota reached, a parameter AWS
 * rejects) fails at once with the remedy named; what passes (throttling, a resource busy in another operation, AWS or
 * the network failing) is retried with backoff. The AWS fault stays as the cause: the control plane's own checks
 * (not found just after a create, throttled while waiting) read its name through `awsFaultName`.
 */
/** AWS's names for "asked too often". */
const THROTTLING = "Throttling|ThrottlingException|RequestLimitExceeded|TooManyRequestsException";
const THROTTLED = new RegExp(`^(${THROTTLING})$`);

/** Whether AWS answered that it was asked too often (a wait looks again later rather than failing). */
export const isThrottled = (e: unknown): boolean => THROTTLED.test(awsFaultName(e));

const RULES: Array<{ match: RegExp; make: (what: string, name: string, message: string) => PgshiftError }> = [
  // Before /NotFound/: an IAM role or a KMS key the service cannot use is a permission, whatever the fault says.
  {
    match:
      /^(AccessDenied|AccessDeniedException|UnauthorizedOperation|NotAuthorized|AuthFailure|IamRoleMissingPermissions|KMSKeyNotAccessible|InvalidClientTokenId|SignatureDoesNotMatch|UnrecognizedClient|MissingAuthenticationToken)/,
    make: (what, name, message) =>
      new PermissionDeniedError(
        `AWS refused ${what} (${name}: ${message}): grant it to the service's role (deploy/aws/iam-policy.json lists every action it calls), or check its credentials`,
      ),
  },
  {
    match: /NotFound/,
    make: (what, name, message) =>
      new NotFoundError(`${what}: ${name}: ${message}; check the identifiers in the spec and the region`),
  },
  {
    match: /AlreadyExist/,
    // Retried: the next attempt describes before it creates, and finds what a racing attempt made (or refuses what is not ours).
    make: (what, name, message) => new AlreadyExistsError(`${what}: ${name}: ${message}`),
  },
  {
    match:
      /Quota|Capacity|LimitReached|InsufficientAvailableIPs|NotSupported|NotAvailable|DoesNotCoverEnoughAZs|InvalidSubnet|InvalidVPCNetworkState|VpcEncryptionControlViolation/,
    make: (what, name, message) =>
      new FailedPreconditionError(
        `${what} cannot be done in this account as it is (${name}: ${message}): raise the quota, or choose another instance class (spec.aws.instance_class) or subnet group, then retry the migration`,
      ),
  },
  {
    match:
      /^(InvalidParameterValue|InvalidParameterCombination|InvalidParameter|MissingParameter|ValidationError|MalformedQueryString)/,
    make: (what, name, message) =>
      new InvalidArgumentError(
        `AWS rejected the parameters of ${what} (${name}: ${message}): check spec.aws and the service's --aws-* flags`,
      ),
  },
  {
    match: new RegExp(
      `^Invalid.*State|NotReady|^(${THROTTLING}|ServiceUnavailable|InternalFailure|InternalError|RequestTimeout|RequestExpired|ExpiredToken)`,
    ),
    make: (what, name, message) =>
      new UnavailableError(`${what} did not go through now (${name}: ${message}); retried with backoff`),
  },
];

/** Node's and the SDK's own names for "AWS could not be reached". */
const UNREACHABLE = /^(TimeoutError|NetworkingError|ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENOTFOUND|EAI_AGAIN|EPIPE)$/;

/** The AWS fault's name behind an error, mapped or not. */
export function awsFaultName(e: unknown): string {
  const outer = e as { name?: string; cause?: { name?: string } };
  return (e instanceof PgshiftError ? outer.cause?.name : undefined) ?? outer.name ?? "";
}

/** The typed error for a failed AWS call; `what` names the call ("rds:CreateDBCluster"). Our own errors pass through. */
export function awsError(e: unknown, what: string): unknown {
  if (e instanceof PgshiftError) return e;
  const err = e as { name?: string; code?: string; message?: string; $metadata?: { httpStatusCode?: number } };
  const name = err.name && err.name !== "Error" ? err.name : (err.code ?? "Error");
  const message = err.message ?? String(e);
  const rule = RULES.find((r) => r.match.test(name));
  let typed: PgshiftError;
  if (rule) typed = rule.make(what, name, message);
  else if (UNREACHABLE.test(name) || UNREACHABLE.test(err.code ?? "") || (err.$metadata?.httpStatusCode ?? 0) >= 500) {
    typed = new UnavailableError(
      `${what}: AWS could not be reached or failed (${name}: ${message}); retried with backoff`,
    );
  } else typed = new PgshiftError(Code.Unknown, `${what} failed (${name}: ${message})`);
  // The fault, for the checks that read its name, and for the log.
  Object.defineProperty(typed, "cause", { value: e, enumerable: false, configurable: true });
  return typed;
}

/**
 * An AWS SDK client whose `send` throws typed errors (the one method the provider calls). The call is named after its
 * command's class, less "Command" and the digits a bundler may add to keep class names apart.
 */
export function withTypedErrors<C extends { send(command: object): Promise<unknown> }>(service: string, client: C): C {
  const send = async (command: object) => {
    try {
      return await client.send(command);
    } catch (e) {
      throw awsError(e, `${service}:${command.constructor.name.replace(/Command\d*$/, "")}`);
    }
  };
  return { send } as unknown as C;
}
