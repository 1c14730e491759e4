/**
 * API latency in local mode under load: 50 connections on loopback, bounded in requests and in
 * time. GET reads one training; POST creates trainings (their runs fail fast: the images URL
 * answers nothing), so the POST figure includes starting an execution.
 */
import autocannon from 'autocannon';
import { startLocal } from '../test/helpers/local-mode.ts';

export interface Latency {
  p50: number;
  p99: number;
  requests: number;
  non2xx: number;
  errors: number;
}

export interface ApiResults {
  get: Latency;
  post: Latency;
}

const CONNECTIONS = 50;
const TIME_CAP_MS = 60_000;

const body = JSON.stringify({
  input: { instance_prompt: 'a photo of sks dog', class_prompt: 'a photo of a dog', instance_data: 'http://127.0.0.1:9/images.zip', max_train_steps: 10 },
  trainer_version: 'demo',
  model: 'bench/latency',
});

async function load(opts: { url: string; method: 'GET' | 'POST'; amount: number; token: string; body?: string }): Promise<Latency> {
  const run = autocannon({
    url: opts.url,
    method: opts.method,
    connections: CONNECTIONS,
    amount: opts.amount,
    timeout: 30,
    headers: { authorization: `Bearer ${opts.token}`, 'content-type': 'application/json' },
    body: opts.body,
  });
  const cap = setTimeout(() => run.stop(), TIME_CAP_MS);
  try {
    const r = await run;
    return { p50: r.latency.p50, p99: r.latency.p99, requests: r.requests.total, non2xx: r.non2xx, errors: r.errors + r.timeouts };
  } finally {
    clearTimeout(cap);
  }
}

export async function measureApi(log: (l: string) => void): Promise<ApiResults> {
  const local = await startLocal({ build: 'append', registry: 'none' });
  try {
    const created = await local.api('POST', '/v1/trainings', JSON.parse(body));
    if (created.status !== 201) throw new Error(`POST /v1/trainings answered ${created.status}: ${JSON.stringify(created.json)}`);
    log(`API latency: GET at ${CONNECTIONS} connections`);
    const get = await load({ url: `${local.url}/v1/trainings/${created.json.id}`, method: 'GET', amount: 3000, token: local.token });
    log(`API latency: POST at ${CONNECTIONS} connections`);
    const post = await load({ url: `${local.url}/v1/trainings`, method: 'POST', amount: 500, token: local.token, body });
    return { get, post };
  } finally {
    await local.stop();
  }
}
