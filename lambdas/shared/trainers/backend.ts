/**
 * What a trainer backend is: one object per backend (`trainers/<backend>/index.ts`), listed once
 * in trainers/backends.ts. Everything else that differs by backend asks this object: the
 * configuration schema, the capacity defaults, the secrets construct, the API's input check,
 * the steps' hooks, and backendFor, which builds the client a run talks to.
 *
 * The object is plain data and small functions, free of zod and of SDK clients: the Lambdas
 * that read it (the trainer queue, the record and stage steps) carry it whole.
 */
import type { z } from 'zod';
import type { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import type { SchemaKit } from '../config-fields.ts';
import type { DemoTrainerFunction } from './demo/lambda-trainer.ts';
import type { TrainerBackend } from './types.ts';

/** The fields every trainer's configuration has (config-fields.ts's `trainerCommon`). */
export interface TrainerFields {
  backend: string;
  owner?: string;
  name?: string;
  version?: string;
  description?: string;
  concurrency?: number;
}

/**
 * Who reads a secret a trainer's configuration names (each is granted its read): the functions
 * that build the backend (start, check, cancel, callbacks), stage-weights's downloads of the
 * trainer's outputs, the trainer-upload routes (infra/functions.ts's TrainerSecrets).
 */
export type SecretReader = 'backends' | 'downloads' | 'uploads';

/** The configuration fields of C that may name a secret. */
type StringFields<C> = { [K in keyof C]-?: C[K] extends string | undefined ? K : never }[keyof C] & string;

/** A secret's string value (cached per container; see lambdas/shared/secrets.ts). */
export type ReadSecret = (id: string) => Promise<string>;

/** Where the API finds a trainer's input schema (an OpenAPI document with `components.schemas.Input`). */
export type SchemaSource =
  | { source: string; document: unknown }
  | { source: string; url: string; headers?: Record<string, string>; pick?: (document: unknown) => unknown }
  | { unavailable: string };

/** What backends use of the service's table: their own items, and the version a training was created with. */
export interface BackendStore {
  client: DynamoDBDocumentClient;
  table: string;
  getTraining(id: string): Promise<{ trainer_version: string } | null | undefined>;
}

/** What building a trainer's client takes. */
export interface TrainerContext {
  /** The trainer's name in the configuration. */
  name: string;
  /** The pool server a run is pinned to (its check, cancel and callbacks go there), if any. */
  server?: string | null;
  /** CIDRs the trainer may live in although private (the egress guard's allow-list). */
  allow: string[];
  secret: ReadSecret;
  store: BackendStore;
  /** The demo trainer on AWS (local mode serves it over HTTP instead). */
  demoTrainer?: DemoTrainerFunction;
}

/**
 * An output the trainer left in the service's bucket is staged where it lies, under the same
 * retention, so checking it is all there is to do.
 */
export interface OutputInBucket {
  /** The key of this training's output, or why the URL is not it. */
  keyOf(trainingId: string, bucket: string, url: string): { key: string } | { refused: string };
  /** Why the output is not there. */
  missing(key: string): string;
}

export interface Backend<C extends TrainerFields> {
  /**
   * The `trainers.<name>` schema of this backend, `backend` its literal name. A function of the
   * kit rather than a schema: config.ts builds it with the full zod, while the Lambdas, which
   * never parse the configuration (it is baked in checked), carry this object but not zod.
   */
  configSchema(kit: SchemaKit): z.ZodType<C>;
  /** Runs at once by default: per server for a pool, else for the whole trainer. */
  concurrency: number;
  /** The configuration fields that name Secrets Manager secrets, and who reads each. */
  secrets: { readonly [F in StringFields<C>]?: readonly SecretReader[] };
  /** Where the API reads the trainer's input schema at submit, or why it cannot. */
  inputSchema(t: C, trainer: { name: string; version: string }, secret: ReadSecret): SchemaSource | Promise<SchemaSource>;
  /** The client a run talks to (start, check, cancel, callbacks). */
  create(t: C, ctx: TrainerContext): TrainerBackend | Promise<TrainerBackend>;

  /** A pool's servers (runs are pinned to one, `concurrency` each); none otherwise. */
  servers?(t: C): string[];
  /** Headers to download one of the trainer's own output URLs with. */
  downloadHeaders?(t: C, url: string, secret: ReadSecret): Promise<Record<string, string>>;
  /** A version the trainer is pinned to: its natural Trainings API version. */
  pinnedVersion?(t: C): string | undefined;
  /** Whether the trainer runs a version no trainer names (a request's own trainer version). */
  runsVersion?(t: C, version: string): boolean;
  /** Why the trainer cannot run here: trainings are refused at submit. */
  unavailable?(t: C): string | undefined;
  /** For a trainer that leaves its output in the service's bucket (an `s3:` URL). */
  outputInBucket?: OutputInBucket;
  /** A failed run's message for the user from the state machine's error, or null to use the generic one. */
  failureMessage?(error: { Error?: string; Cause?: string }, trainerName: string, t: C | undefined): string | null;
}
