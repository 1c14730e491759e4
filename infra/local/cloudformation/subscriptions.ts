/**
 * The template's SNS subscriptions of functions (`AWS::SNS::Subscription`, Protocol `lambda`):
 * which house functions a message to each topic reaches, by the topic's local ARN
 * (../names.ts). SageMaker's notifications go to them locally, as SNS delivers them on AWS.
 */
import type { HandlerName } from '../../constructs/function.ts';
import { topicArn } from '../names.ts';
import type { Synthesized } from './synthesize.ts';

export function snsSubscriptionsOf(synth: Pick<Synthesized, 'template' | 'functions'>): Record<string, HandlerName[]> {
  const byLogicalId = new Map(synth.functions.map((fn) => [fn.logicalId, fn.name]));
  const out: Record<string, HandlerName[]> = {};
  for (const r of Object.values(synth.template.Resources)) {
    if (r.Type !== 'AWS::SNS::Subscription' || r.Properties?.Protocol !== 'lambda') continue;
    const topic = (r.Properties.TopicArn as { Ref?: string })?.Ref;
    const endpoint = r.Properties.Endpoint as { 'Fn::GetAtt'?: [string, string] } | undefined;
    const handler = byLogicalId.get(endpoint?.['Fn::GetAtt']?.[0] ?? '');
    if (!topic || !handler) continue;
    (out[topicArn(topic)] ??= []).push(handler);
  }
  return out;
}
