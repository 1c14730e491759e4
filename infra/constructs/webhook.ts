/**
 * Webhook delivery: the notify Lambda signs and POSTs the training object; the state machine
 * retries it on the configured schedule.
 */
import { Construct } from 'constructs';
import type { Config } from '#shared/config';
import { HouseFunction } from './function.ts';

export interface WebhookDeliveryProps {
  readonly config: Config;
}

export class WebhookDelivery extends Construct {
  readonly notify: HouseFunction;

  constructor(scope: Construct, id: string, props: WebhookDeliveryProps) {
    super(scope, id);
    this.notify = new HouseFunction(this, 'Notify', { name: 'notify', config: props.config });
  }
}
