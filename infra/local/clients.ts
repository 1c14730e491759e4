/**
 * SDK clients of local mode's own, pointed at a local service explicitly (never through the
 * process's environment, which is not the functions'): the operator's (local mode itself, as
 * CloudFormation on AWS), and those of the stand-ins, each signing as the role it acts as.
 */
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { S3Client } from '@aws-sdk/client-s3';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { Store } from '#shared/store';
import type { LocalAws } from './aws.ts';
import { checkIntegration } from './iam/index.ts';
import type { Credentials } from './iam/principals.ts';
import type { LocalFunctions } from './lambda/functions.ts';
import type { LocalServices } from './stepfunctions/stand-in.ts';

/** A client of the service at `endpoint`, with the region and keys of `env` (AWS_* variables). */
export function localClient<C>(
  env: Record<string, string>,
  Client: new (config: Record<string, unknown>) => C,
  endpoint: string | undefined,
  extra: Record<string, unknown> = {},
): C {
  return new Client({
    region: env.AWS_REGION,
    endpoint,
    credentials: { accessKeyId: env.AWS_ACCESS_KEY_ID, secretAccessKey: env.AWS_SECRET_ACCESS_KEY },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    ...extra,
  });
}

/** The trainings table as local mode itself reads it (the terminal's lines). */
export function operatorStore(aws: LocalAws): Store {
  return new Store(DynamoDBDocumentClient.from(localClient(aws.env, DynamoDBClient, aws.env.AWS_ENDPOINT_URL_DYNAMODB)), aws.table);
}

const keysOf = (c: Credentials) => ({ AWS_ACCESS_KEY_ID: c.accessKeyId, AWS_SECRET_ACCESS_KEY: c.secretAccessKey });

/** The running services and functions, as the stand-ins reach them. */
export function localServices(aws: LocalAws, functions: LocalFunctions): LocalServices {
  const { iam } = aws;
  // Local mode always starts its services with the template's policies.
  if (!iam) throw new Error('local mode runs its services with IAM enforced');
  const envAs = (principal: string) => ({ ...aws.env, ...keysOf(iam.credentials(principal)) });
  const clients = new Map<string, S3Client>();
  return {
    invoke: (fn, event) => functions.invoke(fn, event),
    checkIntegration: (action, resource, errorName, principal) => checkIntegration(iam, action, resource, errorName, principal),
    s3As(principal) {
      let client = clients.get(principal);
      if (!client) {
        client = localClient(envAs(principal), S3Client, aws.env.AWS_ENDPOINT_URL_S3, { forcePathStyle: true });
        clients.set(principal, client);
      }
      return client;
    },
    envAs,
  };
}
