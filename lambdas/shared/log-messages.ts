/**
 * Log messages that metric filters and alarms match on (infra/constructs/monitoring.ts): the
 * handlers log exactly these, so a reworded message cannot silently empty a metric.
 */
export const LOG_MESSAGES = {
  /** notify: one webhook attempt, with `delivered` true or false. */
  webhook: 'webhook',
  /** notify: an attempt that failed (the state machine retries it). */
  webhookNotDelivered: 'webhook not delivered',
  /** trainer-callback: every callback, with the HTTP `status` answered. */
  trainerCallback: 'trainer callback',
  /** record: `recorded <action>` for each action of the record step. */
  recorded: (action: string) => `recorded ${action}`,
} as const;
