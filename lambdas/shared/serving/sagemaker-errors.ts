/**
 * SageMaker's refusals and failures, as the errors users read on their prediction: each says
 * what happened and what to do about it. The error's name tells the state machine nothing more
 * than "fail": every one goes to the failure path.
 */
import { StepError, StepErrors } from '../steps.ts';
import { PredictionErrors } from './steps.ts';

const TRANSIENT = new Set(['ThrottlingException', 'ServiceUnavailable', 'InternalFailure', 'InternalServerError', 'RequestTimeout', 'TimeoutError']);

/** `limit 'ml.g5.xlarge for endpoint usage'` in SageMaker's ResourceLimitExceeded message. */
const QUOTA_NAME = /limit '([^']+)'/;

/** The quota's message: the instance type's endpoint usage, the endpoint count, or another. */
export function quotaMessage(instanceType: string, awsMessage: string): string {
  const quota = QUOTA_NAME.exec(awsMessage)?.[1];
  const raise = 'Raise it in the Service Quotas console (AWS services → Amazon SageMaker)';
  if (quota?.includes('for endpoint usage') || (!quota && awsMessage.includes(instanceType))) {
    const name = quota ?? `${instanceType} for endpoint usage`;
    return `SageMaker refused the endpoint: the account's quota "${name}" allows no more instances (new accounts have 0 for GPU types). ${raise}, quota "${name}", or set another serving.instance_type. (${awsMessage})`;
  }
  if (quota && /endpoint/i.test(quota)) {
    return `SageMaker refused the endpoint: the account's quota "${quota}" is reached. Delete endpoints you no longer use, or ${raise.charAt(0).toLowerCase()}${raise.slice(1)}, quota "${quota}". (${awsMessage})`;
  }
  return `SageMaker refused the endpoint: a quota is reached${quota ? ` ("${quota}")` : ''}. ${raise}. (${awsMessage})`;
}

export const noCapacityMessage = (instanceType: string, detail: string) =>
  `AWS has no ${instanceType} capacity for a SageMaker endpoint in this region right now. Try again later, or set another serving.instance_type. (${detail})`;

export const missingImageMessage = (image: string, detail: string) =>
  `The version's serving image ${image} is missing from the registry, or SageMaker may not pull it: re-template the version to build it again. (${detail})`;

const isCapacity = (text: string) => /InsufficientCapacity|insufficient capacity|capacity/i.test(text);
const isMissingImage = (text: string) =>
  /(image|repository|manifest)/i.test(text) && /(not found|does not exist|doesn't exist|could not find|cannot find|unable to (pull|find)|not exist)/i.test(text);

/** A refused call (create model, endpoint configuration or endpoint) as the error to raise. */
export function refusal(e: unknown, ctx: { instanceType: string; image: string }): Error {
  const err = e as Error;
  if (TRANSIENT.has(err.name) || (err as { $retryable?: unknown }).$retryable) return new StepError(StepErrors.Transient, `SageMaker: ${err.message}`);
  if (err.name === 'ResourceLimitExceeded') return new StepError(PredictionErrors.QuotaExceeded, quotaMessage(ctx.instanceType, err.message));
  if (isCapacity(err.name) || isCapacity(err.message)) return new StepError(PredictionErrors.NoCapacity, noCapacityMessage(ctx.instanceType, err.message));
  if (isMissingImage(err.message)) return new StepError(PredictionErrors.EndpointFailed, missingImageMessage(ctx.image, err.message));
  return new StepError(PredictionErrors.EndpointFailed, `SageMaker refused the endpoint: ${err.message}`);
}

/** An endpoint that ended `Failed`: its FailureReason as the error to raise. */
export function endpointFailure(reason: string, ctx: { instanceType: string; image: string }): Error {
  if (isCapacity(reason)) return new StepError(PredictionErrors.NoCapacity, noCapacityMessage(ctx.instanceType, reason));
  if (isMissingImage(reason)) return new StepError(PredictionErrors.EndpointFailed, missingImageMessage(ctx.image, reason));
  return new StepError(PredictionErrors.EndpointFailed, `The version's endpoint failed to start: ${reason}`);
}

/** SageMaker's "no such endpoint/model/config" is a ValidationException with this wording. */
export const isNotFound = (e: unknown) => (e as Error).name === 'ValidationException' && /could not find|does not exist|not found/i.test((e as Error).message);
/** "Cannot create already existing …": a step stopped or retried after the create went through. */
export const isAlreadyExisting = (e: unknown) => (e as Error).name === 'ValidationException' && /already exist/i.test((e as Error).message);
