/** What the api's operations receive and answer. */
import type { LambdaClient } from '@aws-sdk/client-lambda';
import type { S3Client } from '@aws-sdk/client-s3';
import type { Deps } from '#shared/deps';
import type { SchemaLookup } from '#shared/input-schema';
import type { VersionRecord } from '#shared/store';
import type { Logger } from '#shared/log';
import type { ResolvedTrainer } from '#shared/trainers/index';
import type { TemplateRegistry } from './templates.ts';

export interface ApiDeps extends Deps<'sfn' | 'secrets'> {
  lambda: LambdaClient;
  stateMachineArn: string;
  notifyFunction: string;
  /** The master webhook signing key; each owner's secret derives from it and it is never answered. */
  webhookSigningMaster: () => Promise<string>;
  log: Logger;
  templates: TemplateRegistry;
  /** The trainer's input schema (cached by the implementation). */
  inputSchemas: { lookup(trainer: ResolvedTrainer): Promise<SchemaLookup> };
  /** The OpenAPI document (generated at synth, infra/openapi.ts). */
  openApi: () => unknown;
  predictions: PredictionDeps;
}

/** What the predictions routes need beyond the rest (lambdas/api/predictions.ts). */
export interface PredictionDeps {
  /** The prediction state machine; empty where the stack has none (predictions answer 503). */
  stateMachineArn: string;
  /**
   * The S3 client, made on first use: only predictions write the request object and sign file
   * outputs, so the other routes' cold start does not load it.
   */
  s3: () => Promise<S3Client>;
  /** A version's input schema (its template's Cog OpenAPI schema; cached by the implementation). */
  schemas: { lookup(version: VersionRecord): Promise<SchemaLookup> };
}

export interface ApiRequest {
  method: string;
  /** API Gateway's resource path (a `path` of the route table). */
  resource: string;
  /** API Gateway's (decoded) path parameters. */
  params: Record<string, string>;
  query: Record<string, string | undefined>;
  body: string | null;
  /** Owners this token may use (`*` = any). */
  owners: string[];
  /** The `Idempotency-Key` header, if sent. */
  idempotencyKey?: string;
  /** The `Prefer` header, if sent (`wait`, `wait=n`: lambdas/api/prediction-wait.ts). */
  prefer?: string;
}

export interface ApiResponse {
  status: number;
  body: unknown;
}
