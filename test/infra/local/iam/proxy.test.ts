/**
 * Local IAM: the authorising proxies in front of real s3rver, dynalite and the local endpoint,
 * called by real SDK clients signing as two principals with hand-written policies (and once
 * anonymously, once with a wrong key).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CopyObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { DynamoDBClient, GetItemCommand, QueryCommand } from '@aws-sdk/client-dynamodb';
import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { InvokeCommand, LambdaClient } from '@aws-sdk/client-lambda';
import { SFNClient, StartExecutionCommand } from '@aws-sdk/client-sfn';
import { startLocalAws, type LocalAws } from '#infra/local/aws';
import type { Statement } from '#infra/local/iam/policy';
import { testTable } from '#test-helpers/table';
import { waitingMachine } from '#test-helpers/waiting-machine';

const BUCKET_ARN = 'arn:aws:s3:::dreambooth-local';
const TABLE_ARN = 'arn:aws:dynamodb:us-east-1:000000000000:table/dreambooth-trainings';
const STAGER: Statement[] = [
  { Effect: 'Allow', Action: ['s3:GetObject', 's3:PutObject'], Resource: `${BUCKET_ARN}/staged/*` },
  { Effect: 'Allow', Action: 's3:GetObject', Resource: `${BUCKET_ARN}/uploads/*` },
  // A ListBucket narrowed by prefix: it lists staged/ but does not count for HeadObject.
  { Effect: 'Allow', Action: 's3:ListBucket', Resource: BUCKET_ARN, Condition: { StringLike: { 's3:prefix': 'staged/*' } } },
  { Effect: 'Allow', Action: 'dynamodb:GetItem', Resource: TABLE_ARN },
  { Effect: 'Allow', Action: 'secretsmanager:GetSecretValue', Resource: 'arn:aws:secretsmanager:us-east-1:000000000000:secret:local/key-??????' },
];
const LISTER: Statement[] = [
  { Effect: 'Allow', Action: ['s3:GetObject', 's3:PutObject'], Resource: `${BUCKET_ARN}/*` },
  { Effect: 'Allow', Action: 's3:ListBucket', Resource: BUCKET_ARN },
  { Effect: 'Allow', Action: 'lambda:InvokeFunction', Resource: 'arn:aws:lambda:us-east-1:000000000000:function:echo' },
];

let local: LocalAws;
let dataDir: string;

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'iam-'));
  local = await startLocalAws({
    dataDir,
    definition: waitingMachine('Wait', 'starter'),
    taskHandlers: { Wait: async () => undefined },
    secrets: { 'local/key': 'k', 'local/other': 'o' },
    lambdas: { echo: async (p) => p },
    table: testTable(),
    iam: { stager: { role: 'StagerRole', statements: STAGER }, lister: { role: 'ListerRole', statements: LISTER } },
  });
});
afterAll(async () => {
  await local?.stop();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

const common = (who: 'stager' | 'lister' | { accessKeyId: string; secretAccessKey: string }) => ({
  region: 'us-east-1',
  credentials: typeof who === 'string' ? local.iam!.credentials(who) : who,
  maxAttempts: 1,
});
const s3As = (who: Parameters<typeof common>[0]) => new S3Client({ ...common(who), endpoint: local.env.AWS_ENDPOINT_URL_S3, forcePathStyle: true });
const status = (e: unknown) => (e as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
const failure = (p: Promise<unknown>) => p.then(() => { throw new Error('expected a refusal'); }, (e: Error) => e);

describe('S3 through the authorising proxy', () => {
  it('allows a principal its own prefix and answers another with 403 AccessDenied naming the role', async () => {
    const s3 = s3As('stager');
    await s3.send(new PutObjectCommand({ Bucket: local.bucket, Key: 'staged/a/output.zip', Body: 'zip' }));
    const e = await failure(s3.send(new PutObjectCommand({ Bucket: local.bucket, Key: 'uploads/a.zip', Body: 'zip' })));
    expect(e.name).toBe('AccessDenied');
    expect(status(e)).toBe(403);
    expect(e.message).toContain('assumed-role/StagerRole/stager is not authorized to perform: s3:PutObject');
    expect(local.iam!.denials.at(-1)).toMatchObject({ principal: 'stager', action: 's3:PutObject', resource: `${BUCKET_ARN}/uploads/a.zip` });
  });

  it('answers a missing key 403 without s3:ListBucket (a prefix-conditioned grant does not count) and 404 with it', async () => {
    const head = (who: 'stager' | 'lister') => failure(s3As(who).send(new HeadObjectCommand({ Bucket: local.bucket, Key: 'staged/none/output.zip' })));
    expect(status(await head('stager'))).toBe(403);
    expect(status(await head('lister'))).toBe(404);
    const get = await failure(s3As('stager').send(new GetObjectCommand({ Bucket: local.bucket, Key: 'staged/none/output.zip' })));
    expect(get.name).toBe('AccessDenied');
  });

  it('lists under the prefix its condition names, and nowhere else', async () => {
    const s3 = s3As('stager');
    const listed = await s3.send(new ListObjectsV2Command({ Bucket: local.bucket, Prefix: 'staged/' }));
    expect(listed.Contents?.map((c) => c.Key)).toContain('staged/a/output.zip');
    expect((await failure(s3.send(new ListObjectsV2Command({ Bucket: local.bucket, Prefix: 'uploads/' })))).name).toBe('AccessDenied');
  });

  it('needs GetObject on the source of a CopyObject as well as PutObject on the target', async () => {
    await s3As('lister').send(new PutObjectCommand({ Bucket: local.bucket, Key: 'trainer-outputs/t/x.zip', Body: 'z' }));
    const copy = (key: string) => s3As('stager').send(new CopyObjectCommand({ Bucket: local.bucket, Key: key, CopySource: `${local.bucket}/trainer-outputs/t/x.zip` }));
    const e = await failure(copy('staged/b/output.zip'));
    expect(e.message).toContain('s3:GetObject on resource: arn:aws:s3:::dreambooth-local/trainer-outputs/t/x.zip');
  });

  it('refuses anonymous requests, unknown keys and wrong signatures', async () => {
    const anonymous = await fetch(`${local.env.AWS_ENDPOINT_URL_S3}/${local.bucket}/staged/a/output.zip`);
    expect(anonymous.status).toBe(403);
    expect(await anonymous.text()).toContain('<Code>AccessDenied</Code>');
    const unknown = await failure(s3As({ accessKeyId: 'AKIANOBODY', secretAccessKey: 'x' }).send(new GetObjectCommand({ Bucket: local.bucket, Key: 'staged/a/output.zip' })));
    expect(unknown.name).toBe('InvalidAccessKeyId');
    const wrong = { accessKeyId: local.iam!.credentials('stager').accessKeyId, secretAccessKey: 'not-the-key' };
    expect((await failure(s3As(wrong).send(new GetObjectCommand({ Bucket: local.bucket, Key: 'staged/a/output.zip' })))).name).toBe('SignatureDoesNotMatch');
  });

  it('verifies presigned URLs: the signer may, a changed path may not, an expired one says so', async () => {
    const s3 = s3As('stager');
    const url = await getSignedUrl(s3, new GetObjectCommand({ Bucket: local.bucket, Key: 'staged/a/output.zip' }), { expiresIn: 60 });
    expect(await (await fetch(url)).text()).toBe('zip');
    expect((await fetch(url.replace('staged/a/', 'staged/b/'))).status).toBe(403);
    const stale = await getSignedUrl(s3, new GetObjectCommand({ Bucket: local.bucket, Key: 'staged/a/output.zip' }), {
      expiresIn: 1,
      signingDate: new Date(Date.now() - 10_000),
    });
    const res = await fetch(stale);
    expect(res.status).toBe(403);
    expect(await res.text()).toContain('Request has expired');
  });
});

describe('JSON services and Lambda through the authorising proxy', () => {
  it('DynamoDB: the granted table, not its index, AccessDeniedException otherwise', async () => {
    const ddb = new DynamoDBClient({ ...common('stager'), endpoint: local.env.AWS_ENDPOINT_URL_DYNAMODB });
    await ddb.send(new GetItemCommand({ TableName: local.table, Key: { pk: { S: 'x' }, sk: { S: 'y' } } }));
    const e = await failure(
      ddb.send(new QueryCommand({ TableName: local.table, IndexName: 'list', KeyConditionExpression: 'listpk = :p', ExpressionAttributeValues: { ':p': { S: 'x' } } })),
    );
    expect(e.name).toBe('AccessDeniedException');
    expect(e.message).toContain(`dynamodb:Query on resource: ${TABLE_ARN}/index/list`);
  });

  it('Secrets Manager: a secret named in the grant (with its 6-character suffix), not another', async () => {
    const sm = new SecretsManagerClient({ ...common('stager'), endpoint: local.env.AWS_ENDPOINT_URL_SECRETS_MANAGER });
    expect((await sm.send(new GetSecretValueCommand({ SecretId: 'local/key' }))).SecretString).toBe('k');
    expect((await failure(sm.send(new GetSecretValueCommand({ SecretId: 'local/other' })))).name).toBe('AccessDeniedException');
  });

  it('Step Functions and Lambda: AccessDeniedException without the grant, the call with it', async () => {
    const sfn = new SFNClient({ ...common('stager'), endpoint: local.env.AWS_ENDPOINT_URL_SFN });
    expect((await failure(sfn.send(new StartExecutionCommand({ stateMachineArn: local.stateMachineArn, name: 'n', input: '{}' })))).name).toBe('AccessDeniedException');
    const invoke = (who: 'stager' | 'lister') =>
      new LambdaClient({ ...common(who), endpoint: local.env.AWS_ENDPOINT_URL_LAMBDA }).send(new InvokeCommand({ FunctionName: 'echo', Payload: Buffer.from('{"a":1}') }));
    expect(Buffer.from((await invoke('lister')).Payload!).toString()).toBe('{"a":1}');
    const e = await failure(invoke('stager'));
    expect(e.name).toBe('AccessDeniedException');
    expect(status(e)).toBe(403);
  });

  it('refuses a wrong signature as the service does', async () => {
    const wrong = { accessKeyId: local.iam!.credentials('stager').accessKeyId, secretAccessKey: 'not-the-key' };
    const ddb = new DynamoDBClient({ ...common(wrong), endpoint: local.env.AWS_ENDPOINT_URL_DYNAMODB });
    expect((await failure(ddb.send(new GetItemCommand({ TableName: local.table, Key: { pk: { S: 'x' }, sk: { S: 'y' } } })))).name).toBe('InvalidSignatureException');
  });
});
