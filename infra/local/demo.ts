/**
 * `npm start -- --demo`: one demo training end to end against this very server, with a real
 * webhook receiver on loopback that verifies the signature, then one prediction on the version
 * it made. Prints the timeline, the image and the path of the picture it wrote.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { resolve } from 'node:path';
import yazl from 'yazl';
import { verify } from '#shared/webhook-signing';
import { fileUrls, saveFiles } from '../../cli/files.ts';

/** A 1×1 PNG: the demo trainer only checks that instance_data holds images. */
const PNG = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==', 'base64');

export async function instanceDataZip(images = 3): Promise<Buffer> {
  const zip = new yazl.ZipFile();
  for (let i = 1; i <= images; i++) zip.addBuffer(PNG, `person/${i}.png`);
  zip.end();
  const chunks: Buffer[] = [];
  for await (const c of zip.outputStream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

interface Received {
  headers: http.IncomingHttpHeaders;
  body: string;
  url: string;
}

type Api = (method: string, path: string, body?: unknown, headers?: Record<string, string>) => Promise<{ status: number; json: Record<string, unknown> }>;

/** The demo's prompt: the instance prompt's subject, somewhere it has never been. */
export const DEMO_PROMPT = 'a photo of a cjw person on the moon';

/** `dataDir`: where the prediction's picture is written. */
export async function runDemo(url: string, token: string, print: (line: string) => void, dataDir: string): Promise<boolean> {
  const receiver = await startReceiver(await instanceDataZip());
  const api: Api = async (method, path, body, headers = {}) => {
    const res = await fetch(url + path, {
      method,
      headers: { authorization: `Token ${token}`, 'content-type': 'application/json', ...headers },
      body: body ? JSON.stringify(body) : undefined,
    });
    return { status: res.status, json: (await res.json()) as Record<string, unknown> };
  };
  const t0 = Date.now();
  try {
    const created = await api('POST', '/v1/trainings', {
      input: {
        instance_prompt: 'a photo of a cjw person',
        class_prompt: 'a photo of a person',
        instance_data: `${receiver.base}/person.zip`,
        max_train_steps: 30,
      },
      trainer_version: 'demo',
      model: 'dreambooth/demo-model',
      notes: 'made by npm start -- --demo',
      webhook_completed: `${receiver.base}/hook?run=demo`,
    });
    if (created.status !== 201) {
      print(`demo: create answered ${created.status}: ${JSON.stringify(created.json)}`);
      return false;
    }
    const { training, timeline } = await follow(api, created.json, t0);
    const deadline = Date.now() + 30_000;
    while (receiver.received.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    const trained = await report(api, { created: created.json, training, timeline, hook: receiver.received[0] }, print);
    if (training.status !== 'succeeded') return false;
    const predicted = await predict(api, `${String(training.model)}:${String(training.version)}`, print);
    // The token goes to the API's own file URLs only: a presigned URL refuses a second authority.
    const headersFor = (u: string): Record<string, string> => (new URL(u).origin === new URL(url).origin ? { authorization: `Token ${token}` } : {});
    const written = predicted ? await writePredictionImage(predicted, dataDir, headersFor, print) : null;
    return trained && written !== null;
  } finally {
    await receiver.close();
  }
}

/** A webhook receiver on loopback that also serves the instance data. */
async function startReceiver(zip: Buffer) {
  const received: Received[] = [];
  const server = http.createServer(async (req, res) => {
    if (req.method === 'GET' && req.url === '/person.zip') {
      res.writeHead(200, { 'content-type': 'application/zip' }).end(zip);
      return;
    }
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    received.push({ headers: req.headers, body: Buffer.concat(chunks).toString('utf8'), url: req.url ?? '' });
    res.writeHead(200).end('ok');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { base, received, close: () => new Promise((r) => server.close(r)) };
}

/** Polls the training until it ends; each status it took, with the time since `t0`. */
async function follow(api: Api, created: Record<string, unknown>, t0: number) {
  const at = () => `+${((Date.now() - t0) / 1000).toFixed(1)}s`;
  const timeline: string[] = [`${at()}  ${created.status}`];
  let last = String(created.status);
  let training = created;
  while (!['succeeded', 'failed', 'canceled'].includes(last)) {
    if (Date.now() - t0 > 300_000) throw new Error('demo training did not finish within 5 minutes');
    await new Promise((r) => setTimeout(r, 250));
    training = (await api('GET', `/v1/trainings/${String(created.id)}`)).json;
    if (training.status !== last) {
      last = String(training.status);
      timeline.push(`${at()}  ${last}`);
    }
  }
  return { training, timeline };
}

/** Prints the timeline, the webhook's signature check and the image; true when both are good. */
async function report(
  api: Api,
  run: { created: Record<string, unknown>; training: Record<string, unknown>; timeline: string[]; hook: Received | undefined },
  print: (line: string) => void,
): Promise<boolean> {
  const { created, training, timeline, hook } = run;
  // Local mode's token acts for any owner: it names the one whose webhooks it verifies.
  const secret = String((await api('GET', `/v1/webhooks/default/secret?owner=${String(created.model).split('/')[0]}`)).json.key);
  const signed = hook ? verify(secret, hook.headers as Record<string, string>, hook.body) : false;
  print('');
  print(`demo training ${String(created.id)}`);
  for (const line of timeline) print(`  ${line}`);
  if (hook) print(`  webhook ${hook.url}: ${signed ? 'signature verified' : 'BAD SIGNATURE'}`);
  else print('  webhook: not received');
  if (training.status !== 'succeeded') {
    print(`  error: ${String(training.error)}`);
    return false;
  }
  const version = await api('GET', `/v1/models/${String(training.model)}/versions/${String(training.version)}`);
  print(`  version ${String(training.version)}`);
  print(`  image   ${String(version.json.image)}`);
  return signed;
}

/** One prediction on the version, waited for: the prediction when it succeeded, else null (said why). */
async function predict(api: Api, version: string, print: (line: string) => void): Promise<Record<string, unknown> | null> {
  const t0 = Date.now();
  const created = await api('POST', '/v1/predictions', { version, input: { prompt: DEMO_PROMPT } }, { prefer: 'wait' });
  print('');
  if (created.status !== 201 && created.status !== 200) {
    print(`demo prediction: create answered ${created.status}: ${JSON.stringify(created.json)}`);
    return null;
  }
  let p = created.json;
  while (!['succeeded', 'failed', 'canceled'].includes(String(p.status))) {
    if (Date.now() - t0 > 300_000) throw new Error('the demo prediction did not finish within 5 minutes');
    await new Promise((r) => setTimeout(r, 250));
    p = (await api('GET', `/v1/predictions/${String(created.json.id)}`)).json;
  }
  print(`demo prediction ${String(p.id)}: "${DEMO_PROMPT}"`);
  print(`  ${String(p.status)} in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  if (p.status === 'succeeded') return p;
  print(`  error: ${String(p.error)}`);
  return null;
}

/**
 * Writes the prediction's first file output into `dataDir` (never over a file already there) and
 * prints its path; null, said why, when the prediction has no file output.
 */
export async function writePredictionImage(
  prediction: Record<string, unknown>,
  dataDir: string,
  headersFor: (url: string) => Record<string, string>,
  print: (line: string) => void,
): Promise<string | null> {
  const [url] = fileUrls(prediction.output);
  if (!url) {
    print(`  no image in its output: ${JSON.stringify(prediction.output)}`);
    return null;
  }
  const [path] = await saveFiles([url], resolve(dataDir), { stem: `demo-${String(prediction.id)}`, headersFor });
  print(`  picture ${path}`);
  return path!;
}
