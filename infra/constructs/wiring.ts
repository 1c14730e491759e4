/**
 * Wires every house function from its declaration (infra/functions.ts): each need sets its
 * environment variables and makes its grant, as its kind says (infra/needs.ts), here and
 * nowhere else.
 */
import { environmentOf, FUNCTIONS } from '../functions.ts';
import { grantNeed, type Grantables, type ServingValues } from '../needs.ts';
import type { HandlerName, HouseFunction } from './function.ts';
import type { Storage } from './storage.ts';

export interface Deployment extends Grantables {
  readonly storage: Storage;
  readonly publicUrl: string;
  readonly registryHost: string;
  readonly sagemakerJobPrefix: string;
  readonly trainerImageHost: string;
  readonly sagemakerMirrors: string;
  readonly servingValues: ServingValues;
  readonly functions: ReadonlyMap<HandlerName, HouseFunction>;
}

export function wireFunctions(d: Deployment): void {
  for (const fn of d.functions.values()) {
    const env = environmentOf(fn.handlerName, {
      table: d.storage.table.tableName,
      bucket: d.storage.bucket.bucketName,
      stateMachineArn: d.stateMachine.stateMachineArn,
      predictionStateMachineArn: d.predictionStateMachine.stateMachineArn,
      publicUrl: d.publicUrl,
      registryHost: d.registryHost,
      sagemakerJobPrefix: d.sagemakerJobPrefix,
      trainerImageHost: d.trainerImageHost,
      sagemakerMirrors: d.sagemakerMirrors,
      serving: d.servingValues,
      secretId: (s) => d.secrets[s].secretArn,
      functionName: (name) => d.functions.get(name)?.functionName,
    });
    for (const [name, value] of Object.entries(env)) fn.addEnvironment(name, value);
    for (const need of FUNCTIONS[fn.handlerName].needs) grantNeed(fn, need, d);
  }
}
