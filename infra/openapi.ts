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
import { predictionRequestSchema, retemplateSchema, seedRequestSchema, trainingsRequestSchema } from '../lambdas/api/schemas.ts';

type Schema = Record<string, unknown>;

/** The operations that take a JSON body, and its schema. */
const REQUEST_BODIES: Partial<Record<Operation<'api'>, (notesMax: number) => $ZodType>> = {
  createSeedTraining: seedRequestSchema,
  createTrainingsTraining: trainingsRequestSchema,
  retemplate: retemplateSchema,
  createPrediction: () => predictionRequestSchema(true),
  createModelPrediction: () => predictionRequestSchema(false),
};

/** Operations that answer a page and take its `cursor`. */
const PAGED = new Set<string>(['listTrainings', 'listVersions', 'listPredictions']);

const CREATED = new Set<string>(['createSeedTraining', 'createTrainingsTraining', 'retemplate', 'createPrediction', 'createModelPrediction']);

/** Replicate's prediction object (lambdas/shared/predictions/record.ts, predictionView). */
const PREDICTION: Schema = {
  type: 'object',
  properties: {
    id: { type: 'string' },
    model: { type: 'string', description: 'owner/name' },
    version: { type: 'string', description: 'The version id (64 hex)' },
    input: { type: 'object', description: 'As submitted; long data URIs shortened to their header and size' },
    output: { description: 'The model\'s output once succeeded; file outputs are short-lived URLs' },
    logs: { type: 'string' },
    error: { type: ['string', 'null'] },
    status: { type: 'string', enum: ['starting', 'processing', 'succeeded', 'failed', 'canceled'] },
    created_at: { type: 'string', format: 'date-time' },
    started_at: { type: ['string', 'null'], format: 'date-time' },
    completed_at: { type: ['string', 'null'], format: 'date-time' },
    urls: { type: 'object', properties: { get: { type: 'string' }, cancel: { type: 'string' }, web: { type: 'string' } } },
    metrics: { type: 'object', properties: { predict_time: { type: 'number' } } },
    webhook: { type: ['string', 'null'] },
    webhook_events_filter: { type: 'array', items: { type: 'string' } },
  },
  required: ['id', 'model', 'version', 'input', 'output', 'status', 'created_at', 'urls'],
};
const PREDICTION_PAGE: Schema = {
  type: 'object',
  properties: { previous: { type: ['string', 'null'] }, next: { type: ['string', 'null'] }, results: { type: 'array', items: { $ref: '#/components/schemas/Prediction' } } },
};
/** The answer's schema where it is more than an object. */
const RESULTS: Partial<Record<string, Schema>> = {
  createPrediction: { $ref: '#/components/schemas/Prediction' },
  createModelPrediction: { $ref: '#/components/schemas/Prediction' },
  getPrediction: { $ref: '#/components/schemas/Prediction' },
  cancelPrediction: { $ref: '#/components/schemas/Prediction' },
  listPredictions: PREDICTION_PAGE,
};

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
  if (route.op === 'createPrediction' || route.op === 'createModelPrediction') {
    parameters.push({
      name: 'Prefer',
      in: 'header',
      required: false,
      schema: { type: 'string' },
      description: '`wait` or `wait=n`: answer once the prediction is terminal, or after n seconds (at most 25, below API Gateway\'s 29 s limit) with it unfinished',
    });
    parameters.push({ name: 'Idempotency-Key', in: 'header', required: false, schema: { type: 'string' }, description: 'The same key and body answer the same prediction for 24 hours' });
  }
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
      [ok]: TEXT.has(route.op) ? { description: 'The text', content: { 'text/plain': { schema: { type: 'string' } } } } : json(RESULTS[route.op] ?? { type: 'object' }, 'The result'),
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
      schemas: { Error: ERROR, Prediction: PREDICTION },
    },
  };
}
