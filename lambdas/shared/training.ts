/**
 * The training record (one DynamoDB item) and its two public views: the seed's
 * (`/v1/trainings`) and Replicate's Trainings API (`/v1/models/…/trainings`).
 */
import { runIdFor } from './ids.ts';
import type { BackendName } from './trainers/backends.ts';

export const STATUSES = ['starting', 'processing', 'pushing', 'succeeded', 'failed', 'canceled'] as const;
export type Status = (typeof STATUSES)[number];
export const TERMINAL: ReadonlySet<Status> = new Set(['succeeded', 'failed', 'canceled']);
export const isTerminal = (s: Status): boolean => TERMINAL.has(s);

export type Flavour = 'seed' | 'trainings';
export type WebhookEvent = 'start' | 'output' | 'logs' | 'completed';

export interface TrainingRecord {
  id: string;
  flavour: Flavour;
  /** `owner/name` the new version is pushed to. */
  model: string;
  owner: string;
  /** Configured trainer name (or a Replicate version id). */
  trainer: string;
  trainer_backend: BackendName;
  /** Trainer as the Trainings API shows it: `owner/name` and version. */
  trainer_model: string;
  trainer_version: string;
  input: Record<string, unknown>;
  /**
   * `weights`: what the template accepts (absent on records from before it was recorded:
   * `diffusers`); `weights_input`: the input it loads them from (a weights version, no build).
   */
  template: { name: string; repository: string; digest: string; weights?: 'diffusers' | 'any'; weights_input?: string };
  notes: string | null;
  webhook: string | null;
  webhook_events_filter: WebhookEvent[];
  status: Status;
  created_at: string;
  started_at: string | null;
  completed_at: string | null;
  error: string | null;
  logs: string | null;
  /** New model version (manifest digest, 64 hex) once pushed. */
  version: string | null;
  image: string | null;
  predict_time: number | null;
  cancel_requested: boolean;
  /** Trainer-side run: its id derives from the training id; `terminal` once a terminal status arrived. */
  run: {
    id: string;
    started: boolean;
    terminal: 'succeeded' | 'failed' | 'canceled' | null;
    output: string | null;
    /** The pool server the run is pinned to (its check, cancel and callbacks go there). */
    server?: string | null;
  };
  staged: { bucket: string; key: string; size: number } | null;
  /** A sagemaker trainer's job: its name and the capacity attempt it is (each attempt is a new job). */
  job?: { name: string; attempt: number } | null;
  /** The training whose weights this one re-templates (a new version without retraining). */
  retemplate_of?: string | null;
  /** When the last `logs` webhook event went out (epoch ms): they are throttled. */
  logs_event_at?: number | null;
  /**
   * Characters of the trainer's whole log; `logs` holds its tail (lambdas/shared/run-logs.ts),
   * the bucket the whole log when it is longer. Absent on records from before: `logs` is whole.
   */
  logs_length?: number | null;
  /** Token of the Step Functions task waiting on the trainer (never shown, never logged). */
  task_token?: string | null;
  webhook_outcome: { delivered: boolean; attempts: number; last_status: number | null; detail: string } | null;
}

/** The lifecycle fields of a training just accepted: nothing run, nothing pushed yet. */
export function notStarted(id: string, createdAt: string) {
  return {
    status: 'starting' as Status,
    created_at: createdAt,
    started_at: null,
    completed_at: null,
    error: null,
    logs: null,
    version: null,
    image: null,
    predict_time: null,
    cancel_requested: false,
    run: { id: runIdFor(id), started: false, terminal: null, output: null },
    staged: null,
    webhook_outcome: null,
  };
}

const iso = (s: string | null) => s;

/** The seed's training object (also the seed's webhook payload). */
export function seedView(t: TrainingRecord) {
  return {
    id: t.id,
    created_at: iso(t.created_at),
    error: t.error,
    input: t.input,
    logs: t.logs,
    metrics: { predict_time: t.predict_time },
    model: t.model,
    notes: t.notes,
    status: t.status,
    webhook_completed: t.webhook,
    version: t.version,
  };
}

/** Replicate's Trainings API object; `baseUrl` is the public API base (no trailing slash). */
export function trainingsView(t: TrainingRecord, baseUrl: string) {
  const end = t.completed_at ? Date.parse(t.completed_at) : null;
  const total = end ? (end - Date.parse(t.created_at)) / 1000 : null;
  return {
    id: t.id,
    model: t.trainer_model,
    version: t.trainer_version,
    destination: t.model,
    input: t.input,
    logs: t.logs ?? '',
    error: t.error,
    status: t.status,
    // The weights through the API (a short-lived presigned redirect, with the token), never a public URL.
    output: t.version ? { version: `${t.model}:${t.version}`, weights: t.status === 'succeeded' && t.staged ? `${baseUrl}/v1/trainings/${t.id}/weights` : null } : null,
    metrics: { predict_time: t.predict_time ?? undefined, total_time: total ?? undefined },
    created_at: t.created_at,
    started_at: t.started_at,
    completed_at: t.completed_at,
    urls: { get: `${baseUrl}/v1/trainings/${t.id}`, cancel: `${baseUrl}/v1/trainings/${t.id}/cancel` },
    webhook: t.webhook,
    webhook_events_filter: t.webhook_events_filter,
  };
}

export function view(t: TrainingRecord, baseUrl: string) {
  return t.flavour === 'trainings' ? trainingsView(t, baseUrl) : seedView(t);
}
