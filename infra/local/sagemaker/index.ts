/**
 * SageMaker's stand-in for the state machine's `createTrainingJob.sync` tasks: the job runs in a
 * container on the local docker engine (./training-job.ts), reading its channels and writing its
 * model as the job role, as on AWS.
 */
import { join } from 'node:path';
import { SAGEMAKER_JOB_PRINCIPAL } from '../names.ts';
import type { StandIn } from '../stepfunctions/stand-in.ts';
import { runLocalTrainingJob } from './training-job.ts';

export const trainingJobTask: StandIn = (ctx) => async (input, task) => {
  const services = await ctx.services;
  const options = {
    s3: services.s3As(SAGEMAKER_JOB_PRINCIPAL),
    workDir: join(ctx.dataDir, 'sagemaker-jobs'),
    log: ctx.log.trainer,
    stopGraceSeconds: ctx.stopGraceSeconds,
  };
  return runLocalTrainingJob(input, options, task.signal);
};
