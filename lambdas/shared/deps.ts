/**
 * What core functions receive: their clients and configuration, built once per container.
 *
 * Each core names the SDK clients it uses (`Deps<'sfn' | 'secrets'>`), and each handler builds
 * only those: a client the handler never names is not in its bundle, and every client costs a
 * cold start 15–35 ms of loading (`npm run bench -- --only bundles`). Tests pass a full `Deps`.
 */
import { InvokeCommand, type LambdaClient } from '@aws-sdk/client-lambda';
import type { SFNClient } from '@aws-sdk/client-sfn';
import type { S3Client } from '@aws-sdk/client-s3';
import type { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import * as aws from './aws.ts';
import { lambdaEmitter, type Emit } from './events.ts';
import type { Config } from './config.ts';
import { runtimeConfig } from './runtime-config.ts';
import { ENV, requireEnv } from './env.ts';
import { Store } from './store.ts';
import type { DemoTrainerFunction } from './trainers/demo/lambda-trainer.ts';

/** What every handler has: configuration, the table (DynamoDB), the bucket's name, the clock. */
export interface BaseDeps {
  config: Config;
  store: Store;
  bucket: string;
  publicUrl: string;
  now: () => Date;
  /** Sends `start`/`output`/`logs` webhook events the training asked for (none when absent). */
  emit?: Emit;
  /** The deployed demo trainer, for the functions that build trainer backends. */
  demoTrainer?: DemoTrainerFunction;
}

export interface Clients {
  s3: S3Client;
  sfn: SFNClient;
  secrets: SecretsManagerClient;
}

/** The base plus the named clients; all of them when none are named. */
export type Deps<K extends keyof Clients = keyof Clients> = BaseDeps & Pick<Clients, K>;

export const once = aws.memo;

/** The base, built on first use so that importing a handler has no side effects. */
export const baseDeps = /* @__PURE__ */ once(
  (): BaseDeps => ({
    config: runtimeConfig(),
    store: new Store(aws.ddb(), requireEnv(ENV.table)),
    bucket: process.env[ENV.bucket] ?? '',
    publicUrl: (process.env[ENV.publicUrl] ?? '').replace(/\/+$/, ''),
    now: () => new Date(),
  }),
);

/** The demo trainer's function, for the functions that build trainer backends (DEMO_TRAINER_FUNCTION, where deployed). */
export function demoTrainer(): DemoTrainerFunction | undefined {
  const name = process.env[ENV.demoTrainerFunction];
  return name ? demoTrainerFunction(name, aws.lambda) : undefined;
}

/** The demo trainer's function of that name, invoked with an `Event` invocation per run. */
export function demoTrainerFunction(name: string, lambda: () => LambdaClient): DemoTrainerFunction {
  return {
    name,
    invokeAsync: async (payload) =>
      (await lambda().send(new InvokeCommand({ FunctionName: name, InvocationType: 'Event', Payload: Buffer.from(JSON.stringify(payload)) }))).StatusCode,
  };
}

/** The webhook events emitter of the functions that report a training's progress. */
export function emitter(): Emit | undefined {
  const fn = process.env[ENV.notifyFunction];
  return fn ? lambdaEmitter(aws.lambda(), fn) : undefined;
}
