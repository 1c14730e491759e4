/**
 * Webhook delivery: the notify Lambda signs and POSTs the training object; the state machine
 * retries it on the configured schedule.
 */
import { Duration } from 'aws-cdk-lib';
import { Construct } from 'constructs';
import type { Config } from '#shared/config';
import { ENV } from '#shared/env';
import { HouseFunction } from './function.ts';
import type { Secrets } from './secrets.ts';
import type { Storage } from './storage.ts';

export interface WebhookDeliveryProps {
  readonly config: Config;
  readonly storage: Storage;
  readonly secrets: Secrets;
}

export class WebhookDelivery extends Construct {
  readonly notify: HouseFunction;

  constructor(scope: Construct, id: string, props: WebhookDeliveryProps) {
    super(scope, id);
    const { config, storage, secrets } = props;
    this.notify = new HouseFunction(this, 'Notify', {
      name: 'notify',
      config,
      tableName: storage.table.tableName,
      bucketName: storage.bucket.bucketName,
      // The receiver's timeout plus time to load the record and the signing key.
      timeout: Duration.seconds(config.webhooks.timeout_seconds + 10),
      environment: { [ENV.webhookSecret]: secrets.webhookSigning.secretArn },
    });
    storage.grantTableReadWrite(this.notify);
    secrets.webhookSigning.grantRead(this.notify);
  }
}
