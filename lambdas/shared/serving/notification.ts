/**
 * SageMaker asynchronous inference's notification (the SNS message it publishes to the success
 * or error topic when a request ends), as AWS documents it ("Check prediction results"). Local
 * mode's stand-in publishes the same message to the same function (infra/local/sagemaker/).
 * Only what the service reads is required; the rest passes through.
 */
import * as z from '../zod.ts';

export const AsyncInferenceNotification = z.looseObject({
  invocationStatus: z.string(),
  inferenceId: z.string(),
  eventName: z.optional(z.string()),
  failureReason: z.optional(z.string()),
  requestParameters: z.looseObject({ endpointName: z.string(), inputLocation: z.string() }),
  responseParameters: z._default(
    z.looseObject({ contentType: z.optional(z.string()), outputLocation: z.optional(z.string()), failureLocation: z.optional(z.string()) }),
    {},
  ),
});
export type AsyncInferenceNotification = z.infer<typeof AsyncInferenceNotification>;

/** The Lambda event of an SNS subscription: one record per message. */
export const SnsEvent = z.object({
  Records: z.array(z.looseObject({ Sns: z.looseObject({ Message: z.string(), TopicArn: z.optional(z.string()) }) })),
});
export type SnsEvent = z.infer<typeof SnsEvent>;

/** The SNS event a subscribed function receives for one notification (local mode sends the same). */
export function snsEventOf(topicArn: string, message: AsyncInferenceNotification): SnsEvent {
  return {
    Records: [
      {
        EventSource: 'aws:sns',
        EventVersion: '1.0',
        Sns: { Type: 'Notification', TopicArn: topicArn, Message: JSON.stringify(message), Timestamp: new Date().toISOString() },
      },
    ],
  };
}
