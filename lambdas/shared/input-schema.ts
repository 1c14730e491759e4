/**
 * A trainer's input schema, and a training's input checked against it at submit, as Replicate
 * checks a version's inputs at create (422 naming the field). Where the schema comes from is the
 * backend's say (Backend.inputSchema): a cog server's own `GET /openapi.json`
 * (`components.schemas.Input`, Cog >= 0.7), a Replicate version's `openapi_schema`, the demo
 * trainer's document. Schemas are cached per trainer and version, and fetched again after SCHEMA_TTL_MS; when one
 * cannot be had, the caller lets the training proceed (the trainer still checks) and logs why.
 *
 * Validation is @cfworker/json-schema: it interprets the schema (no code generation: nothing to
 * compile per schema on a cold Lambda), resolves Cog's `allOf: [{$ref: '#/components/…'}]`
 * enums, and is small enough for the api bundle's cold import. Only what the schema says is
 * checked: required fields, types, enums, minimum/maximum, formats; unknown fields pass through.
 */
import type { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import type { Config } from './config.ts';
import { request } from './http.ts';
import { getSecretString } from './secrets.ts';
import { backendOf } from './trainers/backends.ts';
import type { ResolvedTrainer } from './trainers/index.ts';

export type JsonSchema = Record<string, unknown>;
export type SchemaLookup = { schema: JsonSchema; source: string } | { schema: null; reason: string };

/** How long a fetched schema is trusted; a failed fetch is retried sooner. */
export const SCHEMA_TTL_MS = 10 * 60_000;
export const SCHEMA_RETRY_MS = 60_000;
const FETCH_TIMEOUT_MS = 5_000;

/** The `Input` schema of an OpenAPI document, with its components so `$ref`s resolve; no `additionalProperties`, so unknown fields pass. */
export function inputSchemaOf(openapi: unknown): JsonSchema | null {
  const components = (openapi as { components?: { schemas?: Record<string, unknown> } } | null)?.components;
  const input = components?.schemas?.Input;
  if (!input || typeof input !== 'object') return null;
  const { additionalProperties: _ignored, ...rest } = input as JsonSchema;
  return { ...rest, components };
}

/** Problems of `input` under `schema`, one per field: `input.<field>: <what is wrong>`. */
export async function inputProblems(schema: JsonSchema, input: Record<string, unknown>): Promise<string[]> {
  const { Validator } = await import('@cfworker/json-schema');
  // OpenAPI 3.0 schemas (Cog's, Replicate's) are JSON Schema draft 4 with extensions.
  const result = new Validator(schema as never, '4', false).validate(input);
  if (result.valid) return [];
  const problems = new Set<string>();
  for (const e of result.errors) {
    if (WRAPPERS.has(e.keyword)) continue;
    if (e.keyword === 'required') {
      const field = e.error.match(/property "(.+)"/)?.[1] ?? '?';
      problems.add(`input.${field}: field required`);
      continue;
    }
    const field = decodePointer(e.instanceLocation);
    problems.add(`input${field ? `.${field}` : ''}: ${e.error.replace(/^Instance /, 'value ')}`);
  }
  return [...problems];
}

/** Keywords that only report that a nested check failed (the nested error says what). */
const WRAPPERS = new Set(['properties', 'allOf', '$ref', 'items', 'anyOf', 'oneOf', 'additionalItems', 'dependencies']);

const decodePointer = (location: string) =>
  location
    .replace(/^#\/?/, '')
    .split('/')
    .filter(Boolean)
    .map((s) => decodeURIComponent(s).replace(/~1/g, '/').replace(/~0/g, '~'))
    .join('.');

/** Fetches and caches input schemas; one per api instance. */
export class InputSchemas {
  private readonly cache = new Map<string, { at: number; value: SchemaLookup }>();

  constructor(
    private readonly config: Config,
    private readonly secrets: SecretsManagerClient,
    private readonly now: () => number = Date.now,
  ) {}

  async lookup(trainer: ResolvedTrainer): Promise<SchemaLookup> {
    const key = `${trainer.name}@${trainer.version}`;
    const hit = this.cache.get(key);
    const ttl = hit?.value.schema ? SCHEMA_TTL_MS : SCHEMA_RETRY_MS;
    if (hit && this.now() - hit.at < ttl) return hit.value;
    const value = await this.fetch(trainer).catch((e: Error): SchemaLookup => ({ schema: null, reason: e.message }));
    this.cache.set(key, { at: this.now(), value });
    return value;
  }

  private async fetch(trainer: ResolvedTrainer): Promise<SchemaLookup> {
    const t = trainer.config;
    const where = await backendOf(t).inputSchema(t, trainer, (id) => getSecretString(this.secrets, id));
    if ('unavailable' in where) return { schema: null, reason: where.unavailable };
    if ('document' in where) return found(where.document, where.source);
    return this.fromDocument(where.url, where.headers ?? {}, where.pick ?? ((doc) => doc), where.source);
  }

  private async fromDocument(url: string, headers: Record<string, string>, pick: (doc: unknown) => unknown, source: string): Promise<SchemaLookup> {
    const res = await request(url, { headers, timeoutMs: FETCH_TIMEOUT_MS, allow: this.config.egress.allow, maxResponseBytes: 4 * 1024 * 1024 });
    if (res.status !== 200) return { schema: null, reason: `${source} answered HTTP ${res.status}` };
    let doc: unknown;
    try {
      doc = JSON.parse(res.body.toString('utf8'));
    } catch {
      return { schema: null, reason: `${source} is not JSON` };
    }
    return found(pick(doc), source);
  }
}

function found(document: unknown, source: string): SchemaLookup {
  const schema = inputSchemaOf(document);
  return schema ? { schema, source } : { schema: null, reason: `${source} has no components.schemas.Input` };
}
