/**
 * A prediction's input at submit: checked against the version's schema (422 naming the field, as
 * Replicate checks it), its URLs through the egress guard, and shortened for the record (the
 * whole input goes to the request object in S3).
 *
 * The schema is the template's Cog OpenAPI document (its `run.cog.openapi_schema` label): a
 * version's image is its template's image plus the weights, labels kept, so the two describe
 * the same inputs, and the template is in a registry the api reads without credentials (the
 * catalog's, as template checks read it). An image is immutable by digest, so a schema found is
 * kept for the container's life; a failed read is tried again after SCHEMA_RETRY_MS.
 */
import { ApiError } from '#shared/errors';
import { inputProblems, inputSchemaOf, type JsonSchema, SCHEMA_RETRY_MS, type SchemaLookup } from '#shared/input-schema';
import type { VersionRecord } from '#shared/store';
import { uploadKeyOf } from '#shared/uploads';
import { checkEgress } from './requests.ts';
import type { TemplateRegistry } from './templates.ts';
import type { ApiDeps } from './types.ts';

export class VersionSchemas {
  private readonly cache = new Map<string, { at: number; value: SchemaLookup }>();

  constructor(
    private readonly registry: TemplateRegistry,
    private readonly now: () => number = Date.now,
  ) {}

  async lookup(v: VersionRecord): Promise<SchemaLookup> {
    const { repository, digest } = v.template;
    const key = `${repository}@${digest}`;
    const hit = this.cache.get(key);
    if (hit && (hit.value.schema || this.now() - hit.at < SCHEMA_RETRY_MS)) return hit.value;
    const value = await this.read(repository, digest).catch((e: Error): SchemaLookup => ({ schema: null, reason: `${key}: ${e.message}` }));
    this.cache.set(key, { at: this.now(), value });
    return value;
  }

  private async read(repository: string, digest: string): Promise<SchemaLookup> {
    const source = `the template ${repository}@sha256:${digest}`;
    if (!this.registry.openApi) return { schema: null, reason: 'this registry client reads no labels' };
    const doc = await this.registry.openApi(repository, digest);
    if (doc === null) return { schema: null, reason: `${source} has no run.cog.openapi_schema label` };
    const schema = inputSchemaOf(doc);
    return schema ? { schema, source } : { schema: null, reason: `${source} has no components.schemas.Input` };
  }
}

/**
 * The input against the version's schema: 422 naming each field. Without a schema the model
 * itself checks (its failure is the prediction's error); the reason is logged.
 */
export async function checkPredictionInput(d: ApiDeps, v: VersionRecord, input: Record<string, unknown>): Promise<void> {
  const hidden = v.weights?.input;
  const found = await d.predictions.schemas.lookup(v);
  if (!found.schema) {
    d.log.warn('version input schema unavailable; inputs are left to the model', { model: v.model, version: v.id, reason: found.reason });
    return;
  }
  const problems = await inputProblems(hidden === undefined ? found.schema : withoutInput(found.schema, hidden), input);
  if (problems.length > 0) throw new ApiError(422, `${problems.join('; ')} (the input schema of ${v.model}:${v.id})`);
}

/** A weights version's weights input is the service's to set (a URL of that version's weights only): 422 naming it. */
export function refuseWeightsInput(v: VersionRecord, input: Record<string, unknown>): void {
  const hidden = v.weights?.input;
  if (hidden !== undefined && Object.hasOwn(input, hidden)) {
    throw new ApiError(422, `input.${hidden}: set by the service to this version's weights; leave it out (the input schema of ${v.model}:${v.id} has no ${hidden})`);
  }
}

/**
 * A version's schema as users see it: a weights version's weights input (which the service sets)
 * is neither offered nor required.
 */
export function withoutInput(schema: JsonSchema, name: string): JsonSchema {
  const properties = { ...((schema.properties as Record<string, unknown> | undefined) ?? {}) };
  delete properties[name];
  const required = Array.isArray(schema.required) ? (schema.required as string[]).filter((r) => r !== name) : schema.required;
  return { ...schema, properties, ...(required === undefined ? {} : { required }) };
}

/**
 * File inputs come as the client sends them: data URIs pass as they are; URLs must pass the
 * egress guard (the endpoint fetches them), except the service's own upload URLs.
 */
export function checkFileInputs(d: ApiDeps, input: Record<string, unknown>): void {
  const visit = (field: string, value: unknown): void => {
    if (typeof value === 'string') {
      if (/^https?:\/\//i.test(value) && !uploadKeyOf(value, d.bucket)) checkEgress(d, field, value);
    } else if (Array.isArray(value)) {
      for (const [i, v] of value.entries()) visit(`${field}.${i}`, v);
    } else if (value && typeof value === 'object') {
      for (const [k, v] of Object.entries(value)) visit(`${field}.${k}`, v);
    }
  };
  for (const [k, v] of Object.entries(input)) visit(`input.${k}`, v);
}

/** Data URIs longer than this are shortened in the record. */
const DATA_URI_KEPT = 128;

/**
 * The input as the record keeps it: each long data URI becomes its header and size, e.g.
 * `data:image/png;base64,…(12345 bytes)`, so that a picture sent inline neither bloats the
 * item (DynamoDB's 400 KB) nor comes back in every read.
 */
export function shortenedInput(input: Record<string, unknown>): Record<string, unknown> {
  const shorten = (value: unknown): unknown => {
    if (typeof value === 'string') return value.startsWith('data:') && value.length > DATA_URI_KEPT ? shortDataUri(value) : value;
    if (Array.isArray(value)) return value.map(shorten);
    if (value && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, shorten(v)]));
    return value;
  };
  return shorten(input) as Record<string, unknown>;
}

function shortDataUri(uri: string): string {
  const comma = uri.indexOf(',');
  if (comma === -1) return `${uri.slice(0, 32)}…(${uri.length} characters)`;
  const header = uri.slice(0, comma);
  const data = uri.slice(comma + 1);
  const bytes = header.endsWith(';base64') ? Buffer.byteLength(data, 'base64') : Buffer.byteLength(decodeURIComponentSafe(data));
  return `${header},…(${bytes} bytes)`;
}

function decodeURIComponentSafe(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}
