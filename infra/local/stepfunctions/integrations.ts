/**
 * The state machine's service integrations, each with the stand-in that runs it locally. The
 * template reader (../cloudformation/state-machine.ts) tells which integration a Task state
 * calls by `matches`; local mode runs the state with `standIn`. Adding an integration: its
 * stand-in, in the file of the service it stands in for, and one line in INTEGRATIONS. A Task
 * that calls none of them invokes a function (../lambda/task.ts).
 */
import { mirrorImageTask, startBuildTask } from '../codebuild/index.ts';
import { describeImagesTask } from '../ecr.ts';
import { lambdaTask, type LambdaTarget } from '../lambda/task.ts';
import { LOCAL_MIRROR_PROJECT } from '../names.ts';
import { trainingJobTask } from '../sagemaker/index.ts';
import type { StandIn, StandInContext } from './stand-in.ts';
import type { TaskHandler } from './tasks.ts';

/** The fields of a Task state an integration is told by. */
export interface TaskResource {
  Resource?: string;
  Parameters?: Record<string, unknown>;
}

interface Integration {
  kind: string;
  matches: (state: TaskResource) => boolean;
  standIn: StandIn;
}

const resourceIs = (arn: string) => (state: TaskResource) => state.Resource === arn;
const startsBuild = (state: TaskResource) => (state.Resource ?? '').startsWith('arn:aws:states:::codebuild:startBuild');
const isMirror = (state: TaskResource) => state.Parameters?.ProjectName === LOCAL_MIRROR_PROJECT;

export const INTEGRATIONS = [
  { kind: 'codebuild', matches: (s: TaskResource) => startsBuild(s) && !isMirror(s), standIn: startBuildTask },
  { kind: 'mirror', matches: (s: TaskResource) => startsBuild(s) && isMirror(s), standIn: mirrorImageTask },
  { kind: 'sagemaker', matches: resourceIs('arn:aws:states:::sagemaker:createTrainingJob.sync'), standIn: trainingJobTask },
  { kind: 'ecr-images', matches: resourceIs('arn:aws:states:::aws-sdk:ecr:describeImages'), standIn: describeImagesTask },
] as const satisfies readonly Integration[];

export type IntegrationKind = (typeof INTEGRATIONS)[number]['kind'];

/** What a Task state calls: a function, or one of the integrations. */
export type TaskTarget = LambdaTarget | { kind: IntegrationKind };

export function integrationOf(state: TaskResource): (typeof INTEGRATIONS)[number] | undefined {
  return INTEGRATIONS.find((i) => i.matches(state));
}

/** The handler of every Task state, by state name. */
export function taskHandlersOf(targets: Record<string, TaskTarget>, ctx: StandInContext): Record<string, TaskHandler> {
  const standIn = (kind: IntegrationKind) => INTEGRATIONS.find((i) => i.kind === kind)!.standIn(ctx);
  return Object.fromEntries(
    Object.entries(targets).map(([state, t]) => [state, t.kind === 'lambda' ? lambdaTask(t, ctx) : standIn(t.kind)]),
  );
}
