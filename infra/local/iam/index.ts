/**
 * Local mode's IAM: each function runs as its own principal (its own credentials, in its own
 * worker thread: ../functions.ts), and the local services allow or deny each call by that
 * principal's policies from the synthesized template. See ./proxy.ts for the services,
 * ./template.ts for the policies.
 */
import type { LocalIam } from '../aws/index.ts';

/** The message of a refused call in service.log (test/helpers/local-mode.ts fails a run that has one). */
export const LOCAL_IAM_DENIED = 'local IAM denied a call';

export { STATE_MACHINE_PRINCIPAL, BUILD_PRINCIPAL, SAGEMAKER_JOB_PRINCIPAL } from './template.ts';

/**
 * A Task state's service integration, checked against the state machine's role as Step
 * Functions does before it calls the service; refused, the task fails with the integration's
 * error name (`Lambda.AWSLambdaException`, `CodeBuild.AWSCodeBuildException`).
 */
export function checkIntegration(iam: LocalIam | undefined, action: string, resource: string, errorName: string): void {
  const denied = iam?.check('state-machine', action, resource);
  if (denied) throw Object.assign(new Error(denied), { name: errorName });
}
