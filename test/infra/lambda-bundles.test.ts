/**
 * The Lambda bundles as deployed (infra/constructs/function.ts's LAMBDA_BUNDLE: CommonJS, the
 * SDK inside, the environment-only credential provider, the configuration baked in), loaded
 * with require() in a fresh Node the way Lambda's runtime loads a handler, against the local
 * AWS endpoints, with credentials in the environment only; and the stack's function assets hold
 * these very bytes (one esbuild run bundles every handler at synth).
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ENV } from '#shared/env';
import { ownerWebhookSecret, verify } from '#shared/webhook-signing';
import { App, Stack } from 'aws-cdk-lib';
import type { CfnFunction } from 'aws-cdk-lib/aws-lambda';
import { bundleLambda, HANDLER_NAMES, HouseFunction, type HandlerName } from '#infra/constructs/function';
import { DreamboothStack } from '#infra/stack';
import { newTraining, startFixture, startServer, type Fixture, type TestServer } from '#test-helpers/aws-local';

const run = promisify(execFile);
// The handlers log to stdout, so the outcome goes to a file.
const RUNNER = `const [file, event, out] = process.argv.slice(2);
const write = (v) => require('node:fs').writeFileSync(out, JSON.stringify(v));
require(file).handler(JSON.parse(event)).then((result) => write({ result }), (e) => write({ error: e.message }));`;

let fx: Fixture;
let receiver: TestServer;
let dir: string;
const bundles = new Map<HandlerName, string>();
const inputs = new Map<HandlerName, string[]>();
/** The files each bundle holds code of (what tree-shaking left). */
const shipped = new Map<HandlerName, string[]>();
let calls = 0;
const DIGEST = 'c'.repeat(64);

beforeAll(async () => {
  receiver = await startServer((_req, res: http.ServerResponse) => res.writeHead(204).end());
  fx = await startFixture({ as: 'api' });
  dir = mkdtempSync(join(tmpdir(), 'bundles-'));
  writeFileSync(join(dir, 'runner.cjs'), RUNNER);
  for (const name of HANDLER_NAMES) {
    const file = join(dir, `${name}.js`);
    const meta = await bundleLambda(name, file, fx.deps.config);
    bundles.set(name, file);
    inputs.set(name, Object.keys(meta.inputs));
    const out = Object.values(meta.outputs).find((o) => o.entryPoint)!;
    shipped.set(name, Object.entries(out.inputs).filter(([, i]) => i.bytesInOutput > 0).map(([path]) => path));
  }
}, 120_000);
afterAll(async () => {
  await receiver?.close();
  await fx?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** Runs a bundled handler in a fresh Node with only the environment a Lambda would have. */
async function invoke(name: HandlerName, event: unknown, env: Record<string, string> = {}): Promise<{ result?: unknown; error?: string }> {
  const base: Record<string, string> = {
    PATH: process.env.PATH!,
    HOME: dir,
    ...fx.local.env,
    // Each bundle signs as its own function.
    AWS_ACCESS_KEY_ID: fx.local.iam!.credentials(name).accessKeyId,
    AWS_SECRET_ACCESS_KEY: fx.local.iam!.credentials(name).secretAccessKey,
    [ENV.table]: fx.local.table,
    [ENV.bucket]: fx.local.bucket,
    [ENV.webhookSecret]: process.env[ENV.webhookSecret]!,
  };
  const out = join(dir, `out-${++calls}.json`);
  await run(process.execPath, [join(dir, 'runner.cjs'), bundles.get(name)!, JSON.stringify(event), out], { env: { ...base, ...env } });
  return JSON.parse(readFileSync(out, 'utf8'));
}

describe('Lambda bundles', () => {
  it('record writes the version through DynamoDB', async () => {
    const t = await newTraining(fx.deps, { status: 'pushing' });
    const out = await invoke('record', { action: 'version', training_id: t.id, build: { id: 'build:1', digest: [`sha256:${DIGEST}`], image: [`registry.local/alice/portrait@sha256:${DIGEST}`] } });
    expect(out).toEqual({ result: { status: 'succeeded' } });
    expect(await fx.deps.store.getTraining(t.id)).toMatchObject({ status: 'succeeded', version: DIGEST });
  });

  it('notify reads its secret from Secrets Manager and delivers a signed webhook', async () => {
    const t = await newTraining(fx.deps, { status: 'succeeded', version: 'b'.repeat(64), completed_at: new Date().toISOString(), webhook: `${receiver.url}/hook` });
    const out = await invoke('notify', { training_id: t.id, event: 'completed' });
    expect(out.error).toBeUndefined();
    const req = receiver.requests.at(-1)!;
    expect(verify(ownerWebhookSecret(fx.webhookSecret, t.owner), req.headers as Record<string, string>, req.body)).toBe(true);
    expect(JSON.parse(req.body)).toMatchObject({ id: t.id, status: 'succeeded' });
  });

  it('each load in a fresh Node and export a handler', async () => {
    for (const name of HANDLER_NAMES) {
      const { stdout } = await run(process.execPath, ['-e', 'process.stdout.write(typeof require(process.argv[1]).handler)', bundles.get(name)!], {
        env: { PATH: process.env.PATH!, AWS_REGION: 'us-east-1' },
      });
      expect(stdout, name).toBe('function');
    }
  });

  it('upload presigns URLs that S3 accepts, signed with the environment credentials', async () => {
    const out = await invoke('upload', { httpMethod: 'POST', resource: '/v1/upload/{filename}', path: '/v1/upload/person.zip', pathParameters: { filename: 'person.zip' } });
    const answer = out.result as { statusCode: number; body: string };
    expect(answer.statusCode).toBe(200);
    const { upload_url, serving_url } = JSON.parse(answer.body) as { upload_url: string; serving_url: string };
    expect((await fetch(upload_url, { method: 'PUT', headers: { 'content-type': 'application/zip' }, body: 'PK' })).status).toBe(200);
    expect(await (await fetch(serving_url)).text()).toBe('PK');
  });

  it('take credentials from the environment only', async () => {
    const t = await newTraining(fx.deps, { status: 'pushing' });
    // A shared credentials file the full SDK chain would use; a Lambda bundle never reads it.
    writeFileSync(join(dir, 'credentials'), '[default]\naws_access_key_id = AKIDFROMFILE\naws_secret_access_key = fromfile\n');
    const out = await invoke(
      'record',
      { action: 'webhook_given_up', training_id: t.id, error: { Error: 'WebhookDeliveryFailed', Cause: 'HTTP 503' } },
      { AWS_ACCESS_KEY_ID: '', AWS_SECRET_ACCESS_KEY: '', AWS_SHARED_CREDENTIALS_FILE: join(dir, 'credentials') },
    );
    expect(out.error).toMatch(/environment variable credentials/i);
  });

  it('hold none of the credential sources a Lambda never uses', () => {
    const unused = /node_modules\/@aws-sdk\/(credential-provider-(node|ini|sso|process|web-identity|login)|nested-clients)\//;
    for (const name of HANDLER_NAMES) expect(inputs.get(name)!.filter((p) => unused.test(p)), name).toEqual([]);
  });

  it('hold the full zod in none: a function checks payloads with zod/mini, and the configuration is validated at synth', () => {
    for (const name of HANDLER_NAMES) expect(inputs.get(name)!.filter((p) => p.includes('node_modules/zod/v4/classic/')), name).toEqual([]);
  });

  it('are what the stack deploys: the asset of each function holds its bundle, byte for byte', () => {
    const outdir = join(dir, 'cdk.out');
    const app = new App({ outdir, builtinCloudFormationValidation: false });
    const stack = new DreamboothStack(app, 'Dreambooth', { config: fx.deps.config });
    app.synth();
    const functions = HouseFunction.all(stack);
    expect(functions.length).toBeGreaterThan(10);
    for (const fn of functions) {
      const code = Stack.of(fn).resolve((fn.node.defaultChild as CfnFunction).code) as { s3Key: string };
      const assetDir = join(outdir, `asset.${code.s3Key.replace(/\.zip$/, '')}`);
      const index = readFileSync(join(assetDir, 'index.js'));
      expect(index.equals(readFileSync(bundles.get(fn.handlerName)!)), fn.handlerName).toBe(true);
      // What it requires of its own files is in its asset: the S3 SDK's file, for the functions
      // that load it on first use.
      const own = [...index.toString('utf8').matchAll(/require\("\.\/([^"]+)"\)/g)].map((m) => m[1]!);
      for (const file of own) expect(readFileSync(join(assetDir, file)).equals(readFileSync(join(dir, file))), `${fn.handlerName}: ${file}`).toBe(true);
      if (fn.handlerName === 'api' || fn.handlerName === 'notify') expect(own, fn.handlerName).toContain('s3-sdk.js');
    }
  }, 120_000);

  it('load the S3 SDK from its own file on first use: the api starts without it, and it presigns with the environment credentials', async () => {
    for (const name of ['api', 'notify'] as const) expect(shipped.get(name)!.filter((p) => p.includes('node_modules/@aws-sdk/client-s3/')), name).toEqual([]);
    const script = `require(${JSON.stringify(join(dir, 's3-sdk.js'))}).getSignedUrl(
      require(${JSON.stringify(join(dir, 's3-sdk.js'))}).newS3Client(),
      new (require(${JSON.stringify(join(dir, 's3-sdk.js'))}).GetObjectCommand)({ Bucket: 'b', Key: 'predictions/p/out.png' }),
      { expiresIn: 60 },
    ).then((url) => console.log(url));`;
    const env = { PATH: process.env.PATH!, HOME: dir, AWS_REGION: 'us-east-1', AWS_ACCESS_KEY_ID: 'AKIDEXAMPLE', AWS_SECRET_ACCESS_KEY: 'secret' };
    const { stdout } = await run(process.execPath, ['-e', script], { env });
    const url = new URL(stdout.trim());
    expect(url.pathname).toBe('/b/predictions/p/out.png');
    expect(url.searchParams.get('X-Amz-Credential')).toMatch(/^AKIDEXAMPLE\//);
    expect(url.searchParams.get('X-Amz-Signature')).toMatch(/^[0-9a-f]{64}$/);
  });
});
