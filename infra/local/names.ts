/**
 * The names of local mode's one deployment: its bucket, table and state machine, in the
 * account and region the template readers (infra/asl.ts) give it.
 */
import { LOCAL_ACCOUNT, LOCAL_REGION } from '../asl.ts';

export { LOCAL_ACCOUNT, LOCAL_REGION };
export const LOCAL_BUCKET = 'dreambooth-local';
export const LOCAL_TABLE = 'dreambooth-trainings';
export const LOCAL_STATE_MACHINE_ARN = `arn:aws:states:${LOCAL_REGION}:${LOCAL_ACCOUNT}:stateMachine:dreambooth-training`;
