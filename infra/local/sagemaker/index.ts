/**
 * SageMaker in local mode: the stand-in for the state machine's `createTrainingJob.sync` tasks
 * (the job runs in a container on the local docker engine, ./training-job.ts, reading its
 * channels and writing its model as the job role, as on AWS), and hosting (./hosting.ts).
 */
import { join } from 'node:path';
import { S3Client } from '@aws-sdk/client-s3';
import { snsEventOf, type AsyncInferenceNotification } from '#shared/serving/notification';
import type { LocalIam } from '../iam/index.ts';
import type { Credentials } from '../iam/principals.ts';
import type { LocalLambda } from '../lambda/invoke.ts';
import { LOCAL_REGION, SAGEMAKER_JOB_PRINCIPAL } from '../names.ts';
import type { StandIn } from '../stepfunctions/stand-in.ts';
import { LocalHosting } from './hosting.ts';
import { endpointOwnerOf } from './inference-container.ts';
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

/**
 * SageMaker hosting as local mode runs it (./hosting.ts): requests read and written as the
 * model's execution role (a principal of local IAM, by the role's logical id), notifications
 * delivered to the functions the template subscribes to each topic.
 */
export function localHosting(o: {
  s3: () => { url: string; iam?: LocalIam };
  lambdas: Record<string, LocalLambda>;
  subscriptions: Record<string, string[]>;
  operator: Credentials;
  log: (line: string) => void;
  /** Local mode's data directory: its id labels the endpoint containers (./inference-container.ts). */
  dataDir?: string;
}): { hosting: LocalHosting; close(): Promise<void> } {
  const clients = new Map<string, S3Client>();
  const s3AsRole = (roleArn: string) => {
    let client = clients.get(roleArn);
    if (client) return client;
    const { url, iam } = o.s3();
    const role = roleArn.split('/').pop()!;
    const principal = iam && [...iam.principals.values()].find((p) => p.role === role);
    if (iam && !principal) throw new Error(`the role ${roleArn} is no role of the template that SageMaker may assume`);
    const credentials = principal ? { accessKeyId: principal.accessKeyId, secretAccessKey: principal.secretAccessKey } : o.operator;
    client = new S3Client({ region: LOCAL_REGION, endpoint: url, forcePathStyle: true, credentials, requestChecksumCalculation: 'WHEN_REQUIRED', responseChecksumValidation: 'WHEN_REQUIRED' });
    clients.set(roleArn, client);
    return client;
  };
  const publish = async (topic: string, message: AsyncInferenceNotification) => {
    const targets = o.subscriptions[topic] ?? [];
    if (!targets.length) o.log(`SNS: no function is subscribed to ${topic}; the notification of ${message.inferenceId} goes nowhere`);
    for (const fn of targets) {
      const lambda = o.lambdas[fn];
      if (!lambda) throw new Error(`the function ${fn} subscribed to ${topic} is not running`);
      await lambda(snsEventOf(topic, message));
    }
  };
  const hosting = new LocalHosting({ s3AsRole, publish, log: o.log, owner: o.dataDir ? endpointOwnerOf(o.dataDir) : undefined });
  return {
    hosting,
    async close() {
      await hosting.close();
      for (const c of clients.values()) c.destroy();
    },
  };
}
