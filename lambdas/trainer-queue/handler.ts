import { sfn } from '#shared/aws';
import { baseDeps, emitter, once } from '#shared/deps';
import { logger } from '#shared/log';
import { ExecutionStatusChange, QueueEvent } from '#shared/steps';
import { acquireSlot, executionEnded, releaseSlot } from './core.ts';

const deps = once(() => ({ ...baseDeps(), sfn: sfn(), emit: emitter() }));

export const handler = async (event: unknown) => {
  // An execution ended (EventBridge rule, or local mode's equivalent): its slot goes free, and
  // a training its steps left unfinished is failed with its webhook.
  const ended = ExecutionStatusChange.safeParse(event);
  if (ended.success) {
    const { name, status } = ended.data.detail;
    const out = await executionEnded(deps(), name, status);
    const log = logger('trainer-queue', { training_id: name });
    if (out.released) log.info('slot freed: the execution ended', { status });
    if (out.failed) log.warn('training failed: its execution ended outside its steps', { status });
    return out;
  }
  const ev = QueueEvent.parse(event);
  const log = logger('trainer-queue', { training_id: ev.training_id });
  if (ev.action === 'release') {
    const out = await releaseSlot(deps(), ev.training_id);
    log.info(out.released ? 'slot freed' : 'held no slot');
    return out;
  }
  const out = await acquireSlot(deps(), ev.training_id, ev.task_token, ev.execution);
  log.info(out.queued ? `waiting for a slot${out.ahead === null ? '' : `: ${out.ahead} ahead`}` : 'slot granted');
  return out;
};
