/** What every core function receives: its clients and configuration, built once per container. */
import type { SFNClient } from '@aws-sdk/client-sfn';
import type { S3Client } from '@aws-sdk/client-s3';
import type { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import * as aws from './aws.ts';
import { lambdaEmitter, type Emit } from './events.ts';
import type { Config } from './config.ts';
import { runtimeConfig } from './runtime-config.ts';
import { ENV, requireEnv } from './env.ts';
import { Store } from './store.ts';

export interface Deps {
  config: Config;
  store: Store;
  s3: S3Client;
  sfn: SFNClient;
  secrets: SecretsManagerClient;
  bucket: string;
  publicUrl: string;
  now: () => Date;
  /** Sends `start`/`output`/`logs` webhook events the training asked for (none when absent). */
  emit?: Emit;
}

export function depsFromEnv(): Deps {
  return {
    config: runtimeConfig(),
    store: new Store(aws.ddb(), requireEnv(ENV.table)),
    s3: aws.s3(),
    sfn: aws.sfn(),
    secrets: aws.secretsManager(),
    bucket: process.env[ENV.bucket] ?? '',
    publicUrl: (process.env[ENV.publicUrl] ?? '').replace(/\/+$/, ''),
    now: () => new Date(),
    emit: process.env[ENV.notifyFunction] ? lambdaEmitter(aws.lambda(), process.env[ENV.notifyFunction]!) : undefined,
  };
}

let shared: Deps | undefined;
/** Deps built on first use, so importing a handler has no side effects. */
export function deps(): Deps {
  return (shared ??= depsFromEnv());
}
