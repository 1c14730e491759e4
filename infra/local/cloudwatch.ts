/**
 * CloudWatch in local mode: the metric alarms the stack's functions put and delete (an
 * endpoint's `HasBacklogWithoutCapacity` alarm). They are kept and described; what they would
 * trigger on AWS, the hosting stand-in does from the scaling policies (./application-autoscaling.ts).
 */
import { z } from 'zod';

const PutMetricAlarm = z
  .object({
    AlarmName: z.string().min(1).max(255),
    MetricName: z.string().optional(),
    Namespace: z.string().optional(),
    ComparisonOperator: z.string(),
    EvaluationPeriods: z.number().int().min(1),
    AlarmActions: z.array(z.string()).optional(),
  })
  .passthrough();
const AlarmNames = z.object({ AlarmNames: z.array(z.string()).optional() });

type Operation = (body: unknown) => unknown;

export class LocalCloudWatch {
  readonly alarms = new Map<string, z.infer<typeof PutMetricAlarm> & { updated: number }>();

  api(): Record<string, Operation> {
    return {
      PutMetricAlarm: (body) => {
        const alarm = PutMetricAlarm.parse(body);
        this.alarms.set(alarm.AlarmName, { ...alarm, updated: Date.now() });
        return {};
      },
      // Names that are not alarms are ignored, as CloudWatch ignores them.
      DeleteAlarms: (body) => {
        for (const name of AlarmNames.parse(body).AlarmNames ?? []) this.alarms.delete(name);
        return {};
      },
      DescribeAlarms: (body) => {
        const names = AlarmNames.parse(body).AlarmNames;
        const found = [...this.alarms.values()].filter((a) => !names || names.includes(a.AlarmName));
        return { MetricAlarms: found.map(({ updated, ...a }) => ({ ...a, StateValue: 'OK', AlarmConfigurationUpdatedTimestamp: updated / 1000 })), CompositeAlarms: [] };
      },
    };
  }
}
