/**
 * What a stand-in for a service integration gets from local mode to run a Task state: the
 * settings it was started with, and the running services, which it reaches only once they run.
 */
import type { S3Client } from '@aws-sdk/client-s3';
import type { Config } from '#shared/config';
import type { InvokeFunction } from '../lambda/invoke.ts';
import type { TaskHandler } from './tasks.ts';

/** Local mode's services and functions, running. */
export interface LocalServices {
  invoke: InvokeFunction;
  /**
   * Step Functions checks the state machine's role before it calls a service; refused, the task
   * fails with `errorName` (`CodeBuild.AWSCodeBuildException`, …). `principal`: the machine's
   * role (../names.ts stateMachinePrincipal), the training machine's by default.
   */
  checkIntegration(action: string, resource: string, errorName: string, principal?: string): void;
  /** An S3 client signing as a principal (a role on AWS: `build`, `sagemaker-job`, a function). */
  s3As(principal: string): S3Client;
  /** The AWS_* variables for a program a stand-in runs (the docker build's `aws` shim), with a principal's keys. */
  envAs(principal: string): Record<string, string>;
}

export interface StandInContext {
  /**
   * Resolves once the services and the functions run. The state machine is part of the services,
   * so its tasks are made before them; no execution starts before they run.
   */
  services: Promise<LocalServices>;
  config: Config;
  /** The build strategy local mode chose (`--build`, or the configuration's when it can run it). */
  buildStrategy: Config['build']['strategy'];
  /** The local registry (`host:port`), which stands for ECR; null for an OCI layout on disk. */
  registryHost: string | null;
  dataDir: string;
  /** Seconds a stopped SageMaker job's container gets between SIGTERM and SIGKILL. */
  stopGraceSeconds?: number;
  log: { build: (line: string) => void; trainer: (line: string) => void };
  /** The principal of the state machine whose Task states these are; the training machine's by default. */
  principal?: string;
}

/** Makes the handler of every Task state of one integration. */
export type StandIn = (ctx: StandInContext) => TaskHandler;
