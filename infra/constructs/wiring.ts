/**
 * Wires every house function from its declaration (infra/functions.ts): each need sets its
 * environment variable and makes its grant, here and nowhere else.
 */
import { Stack } from 'aws-cdk-lib';
import { Grant, Policy, PolicyStatement } from 'aws-cdk-lib/aws-iam';
import type { ILogGroup } from 'aws-cdk-lib/aws-logs';
import type { StateMachine } from 'aws-cdk-lib/aws-stepfunctions';
import { environmentOf, FUNCTIONS, type Need } from '../functions.ts';
import type { HandlerName, HouseFunction } from './function.ts';
import type { SageMakerTraining } from './training-jobs.ts';
import type { Secrets } from './secrets.ts';
import type { Storage } from './storage.ts';

export interface Deployment {
  readonly storage: Storage;
  readonly secrets: Secrets;
  readonly stateMachine: StateMachine;
  readonly publicUrl: string;
  readonly registryHost: string;
  readonly sagemakerJobPrefix: string;
  readonly trainerImageHost: string;
  readonly sagemakerMirrors: string;
  readonly buildLogs: ILogGroup;
  /** Present when a sagemaker trainer is configured. */
  readonly sagemaker?: Pick<SageMakerTraining, 'grantReadOutputs'>;
  readonly functions: ReadonlyMap<HandlerName, HouseFunction>;
}

export function wireFunctions(d: Deployment): void {
  for (const fn of d.functions.values()) {
    const env = environmentOf(fn.handlerName, {
      table: d.storage.table.tableName,
      bucket: d.storage.bucket.bucketName,
      stateMachineArn: d.stateMachine.stateMachineArn,
      publicUrl: d.publicUrl,
      registryHost: d.registryHost,
      sagemakerJobPrefix: d.sagemakerJobPrefix,
      trainerImageHost: d.trainerImageHost,
      sagemakerMirrors: d.sagemakerMirrors,
      secretId: (s) => d.secrets[s].secretArn,
      functionName: (name) => d.functions.get(name)?.functionName,
    });
    for (const [name, value] of Object.entries(env)) fn.addEnvironment(name, value);
    for (const need of FUNCTIONS[fn.handlerName].needs) grant(fn, need, d);
  }
}

function grant(fn: HouseFunction, need: Need, d: Deployment): void {
  switch (need.kind) {
    case 'table':
      if (need.readItems) d.storage.grantItemRead(fn);
      else d.storage.grantTableReadWrite(fn);
      return;
    case 'objects':
      d.storage.grantObjects(fn, need.prefix, need.actions);
      return;
    case 'secret':
      d.secrets[need.secret].grantRead(fn);
      return;
    case 'trainer-secrets':
      for (const secret of d.secrets.trainerSecrets[need.which]) secret.grantRead(fn);
      return;
    case 'state-machine': {
      const [start, execution] = [need.actions.filter((a) => a === 'states:StartExecution'), need.actions.filter((a) => a !== 'states:StartExecution')];
      if (start.length) d.stateMachine.grantStartExecution(fn);
      if (execution.length) d.stateMachine.grantExecution(fn, ...execution);
      return;
    }
    case 'task-tokens':
      // Task tokens are not resources: SendTask* takes no resource-level permission.
      Grant.addToPrincipal({
        grantee: fn,
        actions: need.actions ?? ['states:SendTaskSuccess', 'states:SendTaskFailure', 'states:SendTaskHeartbeat'],
        resourceArns: ['*'],
      });
      return;
    case 'execution-status': {
      const { partition, region, account } = Stack.of(fn);
      new Policy(fn, 'ExecutionStatus', {
        roles: [fn.role!],
        statements: [
          new PolicyStatement({
            actions: need.actions,
            resources: [`arn:${partition}:states:${region}:${account}:execution:${d.stateMachine.stateMachineName}:*`],
          }),
        ],
      });
      return;
    }
    case 'function':
      if (need.invoke) d.functions.get(need.fn)?.grantInvoke(fn);
      return;
    case 'build-logs':
      d.buildLogs.grant(fn, 'logs:GetLogEvents');
      return;
    case 'job-outputs':
      d.sagemaker?.grantReadOutputs(fn);
      return;
    case 'public-url':
    case 'bucket-name':
    case 'registry-host':
    case 'sagemaker-jobs':
      return;
  }
}
