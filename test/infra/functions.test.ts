/**
 * One declaration per function (infra/functions.ts): the synthesized functions carry exactly
 * its variables and grants, and local mode runs each function in its own environment as its
 * own principal.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '#shared/config';
import { HANDLER_NAMES } from '#infra/constructs/function';
import { environmentOf, FUNCTIONS, type EnvironmentValues } from '#infra/functions';
import { startLocalAws, type LocalAws } from '#infra/local/aws';
import { accessKeyIdOf } from '#infra/local/iam/principals';
import { localEnvironment, localPrincipals } from '#infra/local/lambda/environment';
import { startLocalFunctions, type LocalFunctions } from '#infra/local/lambda/functions';
import { synthesize, type CfnResource, type Synthesized } from '#infra/local/cloudformation/synthesize';
import { tableOf } from '#infra/local/cloudformation/table';
import { waitingMachine } from '#test-helpers/waiting-machine';
import { readCdkJson } from '#test-helpers/paths';

const cdkJson = readCdkJson();
const config = parseConfig(cdkJson.context.dreambooth);

let synth: Synthesized;
beforeAll(() => {
  synth = synthesize(config);
}, 60_000);

const resource = (id: string) => synth.template.Resources[id] as CfnResource;
/** Every Allow statement of the policies attached to a role. */
function statementsOf(roleLogicalId: string): Array<{ Action: string | string[]; Resource: unknown }> {
  return Object.values(synth.template.Resources)
    .filter((r) => r.Type === 'AWS::IAM::Policy' && r.Properties!.Roles.some((x: { Ref?: string }) => x.Ref === roleLogicalId))
    .flatMap((r) => r.Properties!.PolicyDocument.Statement);
}
const actionsOf = (roleLogicalId: string) => statementsOf(roleLogicalId).flatMap((s) => [s.Action].flat());
const fn = (name: string) => synth.functions.find((f) => f.name === name)!;

describe('the synthesized functions', () => {
  it('carry exactly the variables their declarations name', () => {
    const names = (v: Record<string, string>) => Object.keys(v).sort();
    const deployed = new Set(synth.functions.map((f) => f.name));
    const values: EnvironmentValues = {
      table: 't',
      bucket: 'b',
      stateMachineArn: 's',
      predictionStateMachineArn: 'p',
      publicUrl: 'u',
      registryHost: 'r',
      sagemakerJobPrefix: '',
      trainerImageHost: '',
      sagemakerMirrors: '{}',
      serving: { endpointPrefix: 'e', endpointRoleArn: 'r', successTopicArn: 's', errorTopicArn: 'f', outputPath: 's3://b/predictions/', variantBuild: { project: 'v', repositoryPrefix: 'x' } },
      secretId: (s) => s,
      functionName: (f) => (deployed.has(f) ? f : undefined),
    };
    // prepare-training-job is deployed with a sagemaker trainer only (test/infra/training-jobs.test.ts).
    expect(synth.functions.map((f) => f.name).sort()).toEqual(HANDLER_NAMES.filter((n) => n !== 'prepare-training-job').sort());
    for (const f of synth.functions) {
      const env = resource(f.logicalId).Properties!.Environment?.Variables ?? {};
      expect(names(env), f.name).toEqual(names(environmentOf(f.name, values)));
    }
  });

  it('set nothing no code reads: no REPOSITORY_PREFIX on the stage function', () => {
    expect(Object.keys(resource(fn('stage-weights').logicalId).Properties!.Environment.Variables)).not.toContain('REPOSITORY_PREFIX');
  });

  it('give check-trainer what building a fresh callback URL needs (it had neither on AWS)', () => {
    const env = resource(fn('check-trainer').logicalId).Properties!.Environment.Variables;
    expect(Object.keys(env)).toEqual(expect.arrayContaining(['CALLBACK_KEY_SECRET', 'PUBLIC_URL']));
    expect(actionsOf(fn('check-trainer').roleLogicalId)).toContain('secretsmanager:GetSecretValue');
  });

  it('grant SendTask* only to the callback and S3 object rights only where declared', () => {
    for (const f of synth.functions) {
      const actions = actionsOf(f.roleLogicalId);
      const declared = FUNCTIONS[f.name].needs;
      expect(actions.includes('states:SendTaskSuccess'), f.name).toBe(declared.some((n) => n.kind === 'task-tokens'));
      expect(
        actions.some((a) => a.startsWith('s3:')),
        f.name,
      ).toBe(declared.some((n) => n.kind === 'objects'));
      expect(actions.includes('lambda:InvokeFunction'), f.name).toBe(
        declared.some((n) => n.kind === 'function' && n.invoke && synth.functions.some((g) => g.name === n.fn)),
      );
    }
  });

  it("grant the trainer log's writers PutObject under logs/ and nothing more there, and its reader GetObject", () => {
    const onLogs = (f: string) =>
      statementsOf(fn(f).roleLogicalId)
        .filter((s) => JSON.stringify(s.Resource).includes('/logs/*'))
        .flatMap((s) => [s.Action].flat())
        .sort();
    for (const writer of ['trainer-callback', 'start-trainer', 'check-trainer']) expect(onLogs(writer), writer).toEqual(['s3:PutObject']);
    expect(onLogs('upload')).toEqual(['s3:GetObject']);
    const others = synth.functions
      .map((f) => f.name)
      .filter((f) => !['trainer-callback', 'start-trainer', 'check-trainer', 'upload'].includes(f));
    for (const other of others) expect(onLogs(other), other).toEqual([]);
  });

  it('name each function’s role for local mode', () => {
    for (const f of synth.functions) {
      expect(resource(f.roleLogicalId).Type).toBe('AWS::IAM::Role');
      expect(resource(f.logicalId).Properties!.Role).toEqual({ 'Fn::GetAtt': [f.roleLogicalId, 'Arn'] });
    }
  });
});

describe('a function in local mode', () => {
  let dataDir: string;
  let local: LocalAws;
  let functions: LocalFunctions;
  const principals = () => localPrincipals(dataDir, synth.functions);

  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'functions-'));
    local = await startLocalAws({
      dataDir,
      table: tableOf(synth.template),
      definition: waitingMachine('Wait', 'start-trainer'),
      taskHandlers: { Wait: async () => undefined },
      secrets: {},
      lambdas: {},
      accessKeys: principals(),
    });
    const values: EnvironmentValues = {
      table: local.table,
      bucket: local.bucket,
      stateMachineArn: local.stateMachineArn,
      predictionStateMachineArn: 'p',
      publicUrl: 'http://127.0.0.1:9',
      registryHost: '',
      sagemakerJobPrefix: '',
      trainerImageHost: '',
      sagemakerMirrors: '{}',
      serving: { endpointPrefix: 'e', endpointRoleArn: 'r', successTopicArn: 's', errorTopicArn: 'f', outputPath: 's3://b/predictions/' },
      secretId: (s) => `local/${s}`,
      functionName: () => undefined,
    };
    functions = startLocalFunctions({
      config,
      names: synth.functions.map((f) => f.name),
      bundleDir: join(dataDir, 'functions'),
      environment: (name) =>
        localEnvironment(name, { config, values, awsEnv: local.env, principal: principals().find((p) => p.fn === name)! }),
      log: () => undefined,
    });
  }, 60_000);
  afterAll(async () => {
    await functions?.stop();
    await local?.stop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('sees only its own variables and signs as itself', () => {
    const [upload] = principals().filter((p) => p.fn === 'upload');
    const env = localEnvironment('upload', {
      config,
      values: {
        table: 't',
        bucket: 'b',
        stateMachineArn: 's',
        predictionStateMachineArn: 'p',
        publicUrl: 'u',
        registryHost: '',
        sagemakerJobPrefix: '',
        trainerImageHost: '',
        sagemakerMirrors: '{}',
        serving: { endpointPrefix: 'e', endpointRoleArn: 'r', successTopicArn: 's', errorTopicArn: 'f', outputPath: 's3://b/predictions/' },
        secretId: (s) => s,
        functionName: () => 'f',
      },
      awsEnv: local.env,
      principal: upload!,
    });
    // The table: it reads a training to answer GET /v1/trainings/{id}/weights.
    expect(env).toMatchObject({ BUCKET_NAME: 'b', TABLE_NAME: 't', AWS_ACCESS_KEY_ID: 'LOCALUPLOAD', AWS_LAMBDA_FUNCTION_NAME: 'upload' });
    for (const other of ['STATE_MACHINE_ARN', 'API_TOKENS_SECRET', 'WEBHOOK_SECRET', 'DREAMBOOTH_OPENAPI'])
      expect(env, other).not.toHaveProperty(other);
    expect(accessKeyIdOf('trainer-callback')).toBe('LOCALTRAINERCALLBACK');
    // The keys persist: a URL presigned before a restart still verifies after it.
    expect(principals().map((p) => p.secretAccessKey)).toEqual(principals().map((p) => p.secretAccessKey));
  });

  it('runs in its own thread with its own credentials, which S3 knows', async () => {
    const out = (await functions.invoke('upload', {
      httpMethod: 'POST',
      resource: '/v1/upload/{filename}',
      pathParameters: { filename: 'a.zip' },
    })) as { statusCode: number; body: string };
    expect(out.statusCode).toBe(200);
    const { upload_url } = JSON.parse(out.body) as { upload_url: string };
    expect(new URL(upload_url).searchParams.get('X-Amz-Credential')).toMatch(/^LOCALUPLOAD\//);
    expect((await fetch(upload_url, { method: 'PUT', headers: { 'content-type': 'application/zip' }, body: 'PK' })).status).toBe(200);
    // A key id no function has is refused (s3rver checks the key id; it does not verify SigV4).
    const forged = new URL(upload_url);
    forged.searchParams.set('X-Amz-Credential', forged.searchParams.get('X-Amz-Credential')!.replace(/^LOCALUPLOAD/, 'LOCALNOBODY'));
    expect((await fetch(forged, { method: 'PUT', headers: { 'content-type': 'application/zip' }, body: 'PK' })).status).toBe(403);
  });

  it('reports a handler error with its name, as Lambda does', async () => {
    await expect(functions.invoke('record', { action: 'nonsense' })).rejects.toThrow();
  });
});
