/**
 * An endpoint's scaling, as AWS's "Autoscale an asynchronous endpoint" sets it: a scalable
 * target from 0 to max_instances, a target tracking policy on ApproximateBacklogSizePerInstance
 * (scale in after idle_minutes of cooldown), and a step policy on a HasBacklogWithoutCapacity
 * alarm to leave zero when requests wait with no instance. Every call is a put: running it
 * again sets the same.
 */
import {
  type ApplicationAutoScalingClient,
  DeregisterScalableTargetCommand,
  PutScalingPolicyCommand,
  RegisterScalableTargetCommand,
} from '@aws-sdk/client-application-auto-scaling';
import { type CloudWatchClient, DeleteAlarmsCommand, PutMetricAlarmCommand } from '@aws-sdk/client-cloudwatch';
import type { EndpointSettings } from '#shared/serving/endpoints';

const VARIANT = 'AllTraffic';
const DIMENSION = 'sagemaker:variant:DesiredInstanceCount' as const;
const resourceId = (endpoint: string) => `endpoint/${endpoint}/variant/${VARIANT}`;
/** The alarm's name starts with the endpoint's, so IAM scopes it by the stack's prefix. */
export const backlogAlarmName = (endpoint: string) => `${endpoint}-backlog-without-capacity`;

interface ScalingDeps {
  autoscaling: ApplicationAutoScalingClient;
  cloudwatch: CloudWatchClient;
}

export async function setUpScaling(d: ScalingDeps, endpoint: string, s: EndpointSettings): Promise<void> {
  const target = { ServiceNamespace: 'sagemaker' as const, ResourceId: resourceId(endpoint), ScalableDimension: DIMENSION };
  await d.autoscaling.send(new RegisterScalableTargetCommand({ ...target, MinCapacity: 0, MaxCapacity: s.max_instances }));
  await d.autoscaling.send(
    new PutScalingPolicyCommand({
      ...target,
      PolicyName: 'backlog-per-instance',
      PolicyType: 'TargetTrackingScaling',
      TargetTrackingScalingPolicyConfiguration: {
        // Requests one instance works on at once: more waiting per instance adds one.
        TargetValue: s.max_concurrent_invocations_per_instance,
        CustomizedMetricSpecification: {
          MetricName: 'ApproximateBacklogSizePerInstance',
          Namespace: 'AWS/SageMaker',
          Dimensions: [{ Name: 'EndpointName', Value: endpoint }],
          Statistic: 'Average',
        },
        ScaleInCooldown: s.idle_minutes * 60,
        ScaleOutCooldown: 60,
      },
    }),
  );
  const step = await d.autoscaling.send(
    new PutScalingPolicyCommand({
      ...target,
      PolicyName: 'leave-zero',
      PolicyType: 'StepScaling',
      StepScalingPolicyConfiguration: {
        AdjustmentType: 'ChangeInCapacity',
        MetricAggregationType: 'Average',
        Cooldown: 300,
        StepAdjustments: [{ MetricIntervalLowerBound: 0, ScalingAdjustment: 1 }],
      },
    }),
  );
  await d.cloudwatch.send(
    new PutMetricAlarmCommand({
      AlarmName: backlogAlarmName(endpoint),
      AlarmDescription: `Requests wait on ${endpoint} with no instance: scale it out of zero.`,
      MetricName: 'HasBacklogWithoutCapacity',
      Namespace: 'AWS/SageMaker',
      Dimensions: [{ Name: 'EndpointName', Value: endpoint }],
      Statistic: 'Average',
      Period: 60,
      EvaluationPeriods: 2,
      DatapointsToAlarm: 2,
      Threshold: 1,
      ComparisonOperator: 'GreaterThanOrEqualToThreshold',
      TreatMissingData: 'missing',
      AlarmActions: step.PolicyARN ? [step.PolicyARN] : [],
    }),
  );
}

/** Deregistering the target deletes its policies (and the target tracking alarms); the step alarm is ours. */
export async function tearDownScaling(d: ScalingDeps, endpoint: string): Promise<void> {
  try {
    await d.autoscaling.send(new DeregisterScalableTargetCommand({ ServiceNamespace: 'sagemaker', ResourceId: resourceId(endpoint), ScalableDimension: DIMENSION }));
  } catch (e) {
    if ((e as Error).name !== 'ObjectNotFoundException') throw e;
  }
  await d.cloudwatch.send(new DeleteAlarmsCommand({ AlarmNames: [backlogAlarmName(endpoint)] }));
}
