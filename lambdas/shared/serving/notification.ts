/**
 * SageMaker asynchronous inference's notification (the SNS message it publishes to the success
 * or error topic when a request ends), as AWS documents it ("Check prediction results"). Local
 * mode's stand-in publishes the same message to the same function (infra/local/sagemaker/).
 * Only what the service reads is required; the rest passes through.
 */
import { z } from 'zod';

export const AsyncInferenceNotification = z
  .object({
    invocationStatus: z.string(),
    inferenceId: z.string(),
    eventName: z.string().optional(),
    failureReason: z.string().optional(),
    requestParameters: z.object({ endpointName: z.string(), inputLocation: z.string() }).passthrough(),
    responseParameters: z
      .object({ contentType: z.string().optional(), outputLocation: z.string().optional(), failureLocation: z.string().optional() })
      .passthrough()
      .default({}),
  })
  .passthrough();
export type AsyncInferenceNotification = z.infer<typeof AsyncInferenceNotification>;

/** The Lambda event of an SNS subscription: one record per message. */
export const SnsEvent = z.object({
  Records: z.array(z.object({ Sns: z.object({ Message: z.string(), TopicArn: z.string().optional() }).passthrough() }).passthrough()),
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
