/**
 * The OpenAPI 3.1 document of the whole API, generated at synth from the route table and the
 * request schemas (zod 4 emits JSON Schema 2020-12, which OpenAPI 3.1 uses as is). It is baked
 * into the api function (GET /v1/openapi.json), written beside the template by bin/app.ts, and
 * given to the api function by local mode.
 */
import { toJSONSchema } from 'zod';
import type { $ZodType } from 'zod/v4/core';
import type { Config } from '#shared/config';
import { pathParameterNames, ROUTES, type Operation, type Route } from '#shared/routes';
import { retemplateSchema, seedRequestSchema, trainingsRequestSchema } from '../lambdas/api/schemas.ts';

type Schema = Record<string, unknown>;

/** The operations that take a JSON body, and its schema. */
const REQUEST_BODIES: Partial<Record<Operation<'api'>, (notesMax: number) => $ZodType>> = {
  createSeedTraining: seedRequestSchema,
  createTrainingsTraining: trainingsRequestSchema,
  retemplate: retemplateSchema,
};

/** Operations that answer a page and take its `cursor`. */
const PAGED = new Set<string>(['listTrainings', 'listVersions']);

const CREATED = new Set<string>(['createSeedTraining', 'createTrainingsTraining', 'retemplate']);

/** Operations that answer plain text (or a redirect to it). */
const TEXT = new Set<string>(['getLogs']);

function jsonSchema(schema: $ZodType): Schema {
  const { $schema: _, ...rest } = toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as Schema;
  return rest;
}

const ERROR: Schema = {
  type: 'object',
  properties: { detail: { type: 'string', description: 'What is wrong and what to fix' }, status: { type: 'integer' } },
  required: ['detail'],
};

function operation(route: Route, config: Config): Schema {
  const parameters: Schema[] = pathParameterNames(route.path).map((name) => ({ name, in: 'path', required: true, schema: { type: 'string' } }));
  if (PAGED.has(route.op)) parameters.push({ name: 'cursor', in: 'query', required: false, schema: { type: 'string' }, description: 'From a previous page\'s `next` or `previous`' });
  if (route.op === 'getWebhookSecret') {
    parameters.push({ name: 'owner', in: 'query', required: false, schema: { type: 'string' }, description: 'The owner whose webhooks the secret signs; required when the token acts for several owners or any' });
  }
  const body = route.fn === 'api' ? REQUEST_BODIES[route.op as Operation<'api'>] : undefined;
  const json = (schema: Schema, description: string) => ({ description, content: { 'application/json': { schema } } });
  const ok = CREATED.has(route.op) ? '201' : '200';
  return {
    operationId: route.op,
    summary: route.summary,
    tags: [route.auth === 'self' ? 'trainers' : 'api'],
    // Trainer-facing routes verify their own secret; the document itself needs nothing.
    security: route.auth === 'token' ? [{ token: [] }] : [],
    ...(parameters.length ? { parameters } : {}),
    ...(body ? { requestBody: { required: true, content: { 'application/json': { schema: jsonSchema(body(config.limits.notes_max_chars)) } } } } : {}),
    responses: {
      [ok]: TEXT.has(route.op) ? { description: 'The text', content: { 'text/plain': { schema: { type: 'string' } } } } : json({ type: 'object' }, 'The result'),
      '4XX': json({ $ref: '#/components/schemas/Error' }, 'The request is wrong: `detail` says what to fix'),
      '5XX': json({ $ref: '#/components/schemas/Error' }, 'Try again later'),
    },
  };
}

export function openApiDocument(config: Config): Schema {
  const paths: Record<string, Record<string, Schema>> = {};
  for (const route of ROUTES as readonly Route[]) {
    (paths[route.path] ??= {})[route.method.toLowerCase()] = operation(route, config);
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'dreambooth-api',
      version: '0.1.0',
      description: "Self-hosted DreamBooth trainings: Replicate's DreamBooth and Trainings APIs on your own AWS account.",
    },
    paths,
    components: {
      securitySchemes: {
        token: { type: 'http', scheme: 'bearer', description: 'An API token; the seed\'s `Authorization: Token <token>` works too' },
      },
      schemas: { Error: ERROR },
    },
  };
}
