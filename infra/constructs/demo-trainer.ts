/**
 * The demo trainer on AWS, for smoke-testing a deployment without a GPU: a Lambda run once per
 * training (asynchronous invocation), like Astria's `branch=fast` or dreamlook's `dry_run`.
 * Created only when the configuration has a `demo` trainer without a `url`.
 */
import { Duration } from 'aws-cdk-lib';
import { Construct } from 'constructs';
import type { Config } from '#shared/config';
import { ENV } from '#shared/env';
import { HouseFunction } from './function.ts';
import { PREFIX, type Storage } from './storage.ts';

export interface DemoTrainerProps {
  readonly config: Config;
  readonly storage: Storage;
  /** The function that starts demo runs (invokes this one). */
  readonly starter: HouseFunction;
  /** Functions that check or cancel runs (through the table). */
  readonly others: HouseFunction[];
}

export class DemoTrainer extends Construct {
  static wanted(config: Config): boolean {
    return Object.values(config.trainers).some((t) => t.backend === 'demo' && !t.url);
  }

  readonly fn: HouseFunction;

  constructor(scope: Construct, id: string, props: DemoTrainerProps) {
    super(scope, id);
    const { config, storage } = props;
    this.fn = new HouseFunction(this, 'Function', {
      name: 'demo-trainer',
      config,
      tableName: storage.table.tableName,
      bucketName: storage.bucket.bucketName,
      // One invocation is one run: Lambda's limit bounds a demo training.
      timeout: Duration.minutes(15),
      memorySize: 256,
    });
    // An asynchronous invocation's own retries would start the run again: the run dedupes, and
    // no retry is needed for a demo.
    this.fn.configureAsyncInvoke({ retryAttempts: 0 });
    storage.grantTableReadWrite(this.fn);
    storage.grantObjects(this.fn, PREFIX.trainerOutputs, ['s3:PutObject', 's3:GetObject']);
    this.fn.grantInvoke(props.starter);
    for (const fn of [props.starter, ...props.others]) fn.addEnvironment(ENV.demoTrainerFunction, this.fn.functionName);
  }
}
