/**
 * One route table: the synthesized API Gateway methods are exactly the table's (no more, no
 * fewer, each on its function with its authorization), local mode reads the same from the
 * template, and every route the documents (README.md and docs/*.md) show exists.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '#shared/config';
import { matchPath, ROUTES, type Route } from '#shared/routes';
import { restApiOf, type LocalApi } from '#infra/local/cloudformation/rest-api';
import { synthesize, type Synthesized } from '#infra/local/cloudformation/synthesize';
import { join } from 'node:path';
import { readCdkJson, repoFile } from '#test-helpers/paths';

const cdkJson = readCdkJson();
// The README and the pages of docs/, read as one text: a route may be documented on any page.
const docsDir = repoFile('docs/');
const documents = [
  readFileSync(repoFile('README.md'), 'utf8'),
  ...readdirSync(docsDir).filter((f) => f.endsWith('.md')).map((f) => readFileSync(join(docsDir, f), 'utf8')),
].join('\n');

let synth: Synthesized;
let api: LocalApi;

beforeAll(() => {
  synth = synthesize(parseConfig(cdkJson.context.dreambooth));
  api = restApiOf(synth);
}, 60_000);

const key = (r: { method: string; path: string }) => `${r.method} ${r.path}`;

describe('the REST API of the synthesized template', () => {
  it('has exactly the methods of the route table, each on its function with its authorization', () => {
    // Prepare: the route table as API Gateway should have it.
    const expected = (ROUTES as readonly Route[]).map((r) => ({
      method: r.method,
      path: r.path,
      authorizer: r.auth === 'token' ? 'authorizer' : null,
      fn: r.fn,
    }));
    // Assess: equal, not merely containing.
    const byKey = (a: { method: string; path: string }, b: { method: string; path: string }) => key(a).localeCompare(key(b));
    expect([...api.routes].sort(byKey)).toEqual(expected.sort(byKey));
  });

  it('counts its methods in the template itself as the table does', () => {
    const methods = Object.values(synth.template.Resources).filter((r) => r.Type === 'AWS::ApiGateway::Method');
    expect(methods).toHaveLength(ROUTES.length);
  });

  it('has the routes the README once lacked on AWS', () => {
    const keys = api.routes.map(key);
    for (const route of [
      'GET /v1/templates',
      'GET /v1/models/{owner}/{name}',
      'GET /v1/models/{owner}/{name}/versions',
      'POST /v1/models/{owner}/{name}/versions',
      'GET /v1/openapi.json',
    ]) {
      expect(keys, route).toContain(route);
    }
  });

  it('answers a missing route and a missing token in the API error shape', () => {
    expect(api.gatewayResponses.MISSING_AUTHENTICATION_TOKEN).toMatchObject({ status: 404 });
    expect(JSON.parse(api.gatewayResponses.MISSING_AUTHENTICATION_TOKEN!.body)).toMatchObject({ status: 404, detail: expect.stringContaining('no such route') });
    expect(JSON.parse(api.gatewayResponses.UNAUTHORIZED!.body)).toMatchObject({ status: 401, detail: expect.stringContaining('Authorization') });
  });
});

describe('the documents', () => {
  it('names only routes that exist', () => {
    const named = [...documents.matchAll(/\b(GET|POST) (\/v1\/[^\s`"',)]*)/g)].map((m) => `${m[1]} ${m[2]}`);
    expect(named.length).toBeGreaterThan(10);
    const keys = new Set(api.routes.map(key));
    for (const route of named) expect(keys, route).toContain(route);
  });

  it('shows only curl calls that reach a route', () => {
    const calls = documents.split('\n').filter((line) => /curl .*\$API\/v1\//.test(line));
    expect(calls.length).toBeGreaterThan(8);
    for (const call of calls) {
      const method = call.match(/-X (\w+)/)?.[1] ?? (/ -d /.test(call) ? 'POST' : 'GET');
      const path = call.match(/\$API(\/v1\/[^\s"'\\]*)/)![1]!.replace(/\$\w+/g, 'x').split('?')[0]!;
      const routes = api.routes.filter((r) => r.method === method).map((r) => r.path);
      expect(matchPath(routes, path), `${method} ${path}`).not.toBeNull();
    }
  });

  it('documents every token route of the table', () => {
    const named = new Set([...documents.matchAll(/\b(GET|POST) (\/v1\/[^\s`"',)]*)/g)].map((m) => `${m[1]} ${m[2]}`));
    const undocumented = (ROUTES as readonly Route[]).filter((r) => r.auth !== 'self' && !named.has(key(r))).map(key);
    expect(undocumented).toEqual([]);
  });
});
