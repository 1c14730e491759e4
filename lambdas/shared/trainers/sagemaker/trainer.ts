/**
 * The `sagemaker` backend as the callback route and the API see it. The state machine starts
 * and awaits the training job itself (`createTrainingJob.sync`), so there is nothing to start,
 * check or cancel here: a stopped execution stops its job. What arrives on the callback route
 * is the runner inside the job forwarding the Cog server's progress (cumulative logs); the
 * job's own end, not a callback, decides how the run ended, so every report counts as running.
 */
import { parsePrediction } from '../cog/trainer.ts';
import { TrainerFailedError, type InboundRequest, type Run, type RunState, type TrainerBackend } from '../types.ts';

export class SageMakerTrainer implements TrainerBackend {
  async start(_run: Run): Promise<RunState> {
    throw new TrainerFailedError('a sagemaker trainer is started by the state machine, not by start-trainer');
  }

  async check(_run: Run): Promise<RunState | 'lost'> {
    throw new TrainerFailedError('a sagemaker trainer is awaited by the state machine, not by check-trainer');
  }

  /** StopExecution stops the `.sync` job (Step Functions calls StopTrainingJob). */
  async cancel(_runId: string): Promise<void> {}

  async parseCallback(req: InboundRequest): Promise<RunState & { runId?: string }> {
    const state = parsePrediction(JSON.parse(req.body));
    return { runId: state.runId, status: 'processing', logs: state.logs, predict_time: null, output: null, error: null };
  }
}
