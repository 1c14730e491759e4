/** What a run's client is, whatever the backend (made by its `create`, trainers/backend.ts), and the errors it throws. */
export type RunStatus = 'starting' | 'processing' | 'succeeded' | 'failed' | 'canceled';

export interface RunState {
  status: RunStatus;
  /** URL of the trainer's output archive (output.zip) once known. */
  output?: string | null;
  /** The whole log so far (Cog and Replicate send cumulative logs). */
  logs?: string | null;
  error?: string | null;
  predict_time?: number | null;
}

export interface Run {
  trainingId: string;
  /** Trainer-side id; derives from the training id so a retried start never starts twice. */
  runId: string;
  input: Record<string, unknown>;
  /** Our callback route, carrying the per-training secret. */
  callbackUrl: string;
}

export interface InboundRequest {
  headers: Record<string, string | undefined>;
  body: string;
}

export interface TrainerBackend {
  /** Starts the run, or reports the state of the run already started under this id. */
  start(run: Run): Promise<RunState>;
  /**
   * Asks the trainer how the run is doing when its callback is late. `lost` means the
   * trainer no longer knows the run and its result cannot be recovered.
   */
  check(run: Run): Promise<RunState | 'lost'>;
  cancel(runId: string): Promise<void>;
  /** Verifies the trainer's own signature or bearer token (if any) and parses the callback. */
  parseCallback(req: InboundRequest): Promise<RunState & { runId?: string }>;
}

/** A trainer answered "busy": the state machine retries the start later with backoff. */
export class TrainerBusyError extends Error {
  override name = 'TrainerBusy';
}
/** The trainer refused or failed the run: straight to the failure path. */
export class TrainerFailedError extends Error {
  override name = 'TrainerFailed';
}
/** A passing fault (network, 5xx, starting up): retried by the state machine. */
export class TransientError extends Error {
  override name = 'TransientError';
}
/** The callback is not from the trainer. */
export class CallbackAuthError extends Error {
  override name = 'CallbackAuthError';
}
