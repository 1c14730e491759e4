/**
 * `npm start -- --demo`: one demo training end to end against this very server, with a real
 * webhook receiver on loopback that verifies the signature. Prints the timeline and the image.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import yazl from 'yazl';
import { verify } from '#shared/webhook-signing';

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

type Api = (method: string, path: string, body?: unknown) => Promise<{ status: number; json: Record<string, unknown> }>;

export async function runDemo(url: string, token: string, print: (line: string) => void): Promise<boolean> {
  const receiver = await startReceiver(await instanceDataZip());
  const api: Api = async (method, path, body) => {
    const res = await fetch(url + path, {
      method,
      headers: { authorization: `Token ${token}`, 'content-type': 'application/json' },
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
    return await report(api, { created: created.json, training, timeline, hook: receiver.received[0] }, print);
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
