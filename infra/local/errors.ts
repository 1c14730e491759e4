/** An error answered to an SDK client in the service's own error shape (`__type` + message). */
export class AwsError extends Error {
  constructor(
    readonly type: string,
    message: string,
    readonly status = 400,
  ) {
    super(message);
    this.name = type;
  }
}

/**
 * An error a Task state fails with. The executor matches Retry/Catch `ErrorEquals` on
 * `error.name` and reports `error.message` as the Cause.
 */
export class StateError extends Error {
  constructor(name: string, cause: string) {
    super(cause);
    this.name = name;
  }
}

/** Lambda semantics: errorType is the thrown error's name, the Cause is the Lambda error JSON. */
export function lambdaError(err: unknown): { errorType: string; errorMessage: string } {
  if (err instanceof Error) return { errorType: err.name || 'Error', errorMessage: err.message };
  return { errorType: 'Error', errorMessage: String(err) };
}

export function toStateError(err: unknown): StateError {
  if (err instanceof StateError) return err;
  const e = lambdaError(err);
  return new StateError(e.errorType, JSON.stringify(e));
}
