/**
 * The OpenAPI document: valid OpenAPI 3.1 by the specification's own JSON schema, listing every
 * route of the table with the request schemas the api validates with, and served as baked.
 */
import { Validator } from '@seriousme/openapi-schema-validator';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '#shared/config';
import { ROUTES, type Route } from '#shared/routes';
import { openApiDocument } from '#infra/openapi';
import { bakedEnv } from '#infra/constructs/function';
import { openApiDocument as servedDocument } from '#lambdas/api/openapi';
import { readCdkJson } from '#test-helpers/paths';

const cdkJson = readCdkJson();
const config = parseConfig(cdkJson.context.dreambooth);
const doc = openApiDocument(config) as { openapi: string; paths: Record<string, Record<string, any>> };

describe('the OpenAPI document', () => {
  it('is valid OpenAPI 3.1', async () => {
    const result = await new Validator().validate(structuredClone(doc));
    expect(result.errors ?? []).toEqual([]);
    expect(result.valid).toBe(true);
    expect(doc.openapi).toBe('3.1.0');
  });

  it('is told apart from an invalid one by the validator', async () => {
    const broken = structuredClone(doc) as { paths: Record<string, Record<string, any>> };
    // OpenAPI 3 has no `in: body` parameter (Swagger 2 had).
    broken.paths['/v1/trainings/{id}']!.get.parameters[0].in = 'body';
    expect((await new Validator().validate(broken)).valid).toBe(false);
  });

  it('lists every route of the table, and nothing else', () => {
    const listed = Object.entries(doc.paths).flatMap(([path, methods]) => Object.keys(methods).map((m) => `${m.toUpperCase()} ${path}`));
    expect(listed.sort()).toEqual((ROUTES as readonly Route[]).map((r) => `${r.method} ${r.path}`).sort());
    for (const r of ROUTES as readonly Route[]) {
      const op = doc.paths[r.path]![r.method.toLowerCase()];
      expect(op.operationId).toBe(r.op);
      expect(op.security).toEqual(r.auth === 'token' ? [{ token: [] }] : []);
    }
  });

  it('describes the create bodies with the schemas the api validates with', () => {
    const seed = doc.paths['/v1/trainings']!.post.requestBody.content['application/json'].schema;
    expect(seed.required).toEqual(['input', 'trainer_version', 'model']);
    expect(seed.additionalProperties).toBe(false);
    expect(seed.properties.notes.anyOf).toContainEqual({ type: 'string', maxLength: config.limits.notes_max_chars });
    const trainings = doc.paths['/v1/models/{owner}/{name}/versions/{version}/trainings']!.post;
    expect(trainings.requestBody.content['application/json'].schema.properties.webhook_events_filter).toBeDefined();
    expect(trainings.parameters.map((p: { name: string }) => p.name)).toEqual(['owner', 'name', 'version']);
  });

  it('is served as baked into the api function, with the deployment as its server', () => {
    process.env.DREAMBOOTH_OPENAPI = bakedEnv(config, 'api').DREAMBOOTH_OPENAPI;
    try {
      expect(servedDocument('https://api.example/prod')).toEqual({ ...doc, servers: [{ url: 'https://api.example/prod' }] });
    } finally {
      delete process.env.DREAMBOOTH_OPENAPI;
    }
    expect(bakedEnv(config, 'upload').DREAMBOOTH_OPENAPI).toBeUndefined();
  });
});
