/**
 * The demo trainer on AWS, for smoke-testing a deployment without a GPU: a Lambda run once per
 * training (asynchronous invocation), like Astria's `branch=fast` or dreamlook's `dry_run`.
 * Created only when the configuration has a `demo` trainer without a `url`.
 */
import { Construct } from 'constructs';
import type { Config } from '#shared/config';
import { HouseFunction } from './function.ts';

export interface DemoTrainerProps {
  readonly config: Config;
}

export class DemoTrainer extends Construct {
  static wanted(config: Config): boolean {
    return Object.values(config.trainers).some((t) => t.backend === 'demo' && !t.url);
  }

  readonly fn: HouseFunction;

  constructor(scope: Construct, id: string, props: DemoTrainerProps) {
    super(scope, id);
    this.fn = new HouseFunction(this, 'Function', { name: 'demo-trainer', config: props.config });
    // An asynchronous invocation's own retries would start the run again: the run dedupes, and
    // no retry is needed for a demo.
    this.fn.configureAsyncInvoke({ retryAttempts: 0 });
  }
}
