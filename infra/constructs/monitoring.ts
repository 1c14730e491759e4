/**
 * What an operator watches: a CloudWatch dashboard (executions by status, trainings' and
 * predictions', step durations, webhook deliveries, build minutes) and alarms (failed executions,
 * a run of failed predictions, webhooks given up, a spike of refused callbacks). Webhook and callback numbers come from metric filters on the
 * functions' structured logs, so no handler carries metrics code.
 */
import { Annotations, Duration } from 'aws-cdk-lib';
import { SnsAction } from 'aws-cdk-lib/aws-cloudwatch-actions';
import { Topic } from 'aws-cdk-lib/aws-sns';
import type { IProject } from 'aws-cdk-lib/aws-codebuild';
import {
  Alarm,
  ComparisonOperator,
  Dashboard,
  GraphWidget,
  MathExpression,
  type Metric,
  SingleValueWidget,
  TextWidget,
  TreatMissingData,
} from 'aws-cdk-lib/aws-cloudwatch';
import { FilterPattern, MetricFilter, type ILogGroup } from 'aws-cdk-lib/aws-logs';
import type { StateMachine } from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import { LOG_MESSAGES } from '#shared/log-messages';
import type { HouseFunction } from './function.ts';

export const NAMESPACE = 'Dreambooth';
/** Failed prediction executions within 5 minutes that raise the alarm. */
export const FAILED_PREDICTIONS_THRESHOLD = 5;

export interface MonitoringProps {
  readonly stateMachine: StateMachine;
  /** The prediction state machine (./serving.ts). */
  readonly predictionStateMachine?: StateMachine;
  /** Steps whose durations are shown, by the name the dashboard gives them. */
  readonly steps: Record<string, HouseFunction>;
  readonly notify: HouseFunction;
  readonly record: HouseFunction;
  readonly callback: HouseFunction;
  readonly buildProjects: IProject[];
  /** Where the alarms go (config `monitoring.alarm_topic_arn`). @default no one: synth warns */
  readonly alarmTopicArn?: string;
}

/** What the log metric filters count. */
interface LogMetrics {
  delivered: Metric;
  failedAttempts: Metric;
  givenUp: Metric;
  refused: Metric;
}

export class Monitoring extends Construct {
  readonly dashboard: Dashboard;
  readonly alarms: { failedExecutions: Alarm; webhooksGivenUp: Alarm; callbackRefusals: Alarm; failedPredictions?: Alarm };

  constructor(scope: Construct, id: string, props: MonitoringProps) {
    super(scope, id);
    const metrics = this.logMetrics(props);
    this.dashboard = this.createDashboard(props, metrics);
    this.alarms = this.createAlarms(props, metrics);
    this.notifyOn(Object.values(this.alarms).filter((a) => a !== undefined), props.alarmTopicArn);
  }

  /** Counts from the functions' structured logs, by metric filters. */
  private logMetrics(props: MonitoringProps): LogMetrics {
    const count = (name: string, logGroup: ILogGroup, pattern: string) =>
      new MetricFilter(this, `${name}Filter`, {
        logGroup,
        metricNamespace: NAMESPACE,
        metricName: name,
        filterPattern: FilterPattern.literal(pattern),
        metricValue: '1',
        defaultValue: 0,
      }).metric({ statistic: 'Sum', period: Duration.minutes(5) });

    const message = (m: string) => `$.message = ${JSON.stringify(m)}`;
    return {
      delivered: count('WebhooksDelivered', props.notify.logGroup, `{ ${message(LOG_MESSAGES.webhook)} && $.delivered IS TRUE }`),
      failedAttempts: count('WebhookAttemptsFailed', props.notify.logGroup, `{ ${message(LOG_MESSAGES.webhookNotDelivered)} }`),
      givenUp: count('WebhooksGivenUp', props.record.logGroup, `{ ${message(LOG_MESSAGES.recorded('webhook_given_up'))} }`),
      refused: count('CallbacksRefused', props.callback.logGroup, `{ ${message(LOG_MESSAGES.trainerCallback)} && $.status >= 400 && $.status < 500 }`),
    };
  }

  private createDashboard(props: MonitoringProps, { delivered, failedAttempts, givenUp, refused }: LogMetrics): Dashboard {
    const executionsOf = (sm: StateMachine) =>
      (['ExecutionsStarted', 'ExecutionsSucceeded', 'ExecutionsFailed', 'ExecutionsAborted', 'ExecutionsTimedOut'] as const).map((m) =>
        sm.metric(m, { statistic: 'Sum', period: Duration.minutes(5), label: m.replace('Executions', '') }),
      );
    const buildMinutes = props.buildProjects.map(
      (p) =>
        new MathExpression({
          expression: 'd / 60',
          usingMetrics: { d: p.metricDuration({ statistic: 'Sum', period: Duration.hours(1) }) },
          label: `build minutes (${p.node.id})`,
          period: Duration.hours(1),
        }),
    );

    const dashboard = new Dashboard(this, 'Dashboard', { defaultInterval: Duration.days(1) });
    dashboard.addWidgets(
      new TextWidget({ markdown: '# dreambooth-api\nTrainings and predictions are executions named by their id: open one in the Step Functions console.', width: 24, height: 2 }),
    );
    if (props.predictionStateMachine) dashboard.addWidgets(new GraphWidget({ title: 'Predictions by status', left: executionsOf(props.predictionStateMachine), width: 24 }));
    dashboard.addWidgets(
      new GraphWidget({ title: 'Executions by status', left: executionsOf(props.stateMachine), width: 12 }),
      new GraphWidget({
        title: 'Step durations (p90, ms)',
        left: Object.entries(props.steps).map(([label, fn]) => fn.metricDuration({ statistic: 'p90', label })),
        width: 12,
      }),
    );
    dashboard.addWidgets(
      new GraphWidget({ title: 'Webhook deliveries', left: [delivered, failedAttempts, givenUp], width: 8 }),
      new GraphWidget({ title: 'Build minutes', left: buildMinutes, width: 8 }),
      new SingleValueWidget({ title: 'Refused trainer callbacks (5 min)', metrics: [refused], width: 8 }),
    );
    return dashboard;
  }

  private createAlarms(props: MonitoringProps, { givenUp, refused }: LogMetrics): Monitoring['alarms'] {
    const alarm = (name: string, metric: Metric | MathExpression, threshold: number, description: string) =>
      new Alarm(this, name, {
        metric,
        threshold,
        evaluationPeriods: 1,
        comparisonOperator: ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        treatMissingData: TreatMissingData.NOT_BREACHING,
        alarmDescription: description,
      });
    const predictions = props.predictionStateMachine;
    return {
      failedExecutions: alarm('FailedExecutions', props.stateMachine.metricFailed({ statistic: 'Sum', period: Duration.minutes(5) }), 1, 'A training execution failed.'),
      // A model's own error (a bad input) fails its execution too, so one failure is no alarm.
      ...(predictions && {
        failedPredictions: alarm(
          'FailedPredictions',
          predictions.metricFailed({ statistic: 'Sum', period: Duration.minutes(5) }),
          FAILED_PREDICTIONS_THRESHOLD,
          `${FAILED_PREDICTIONS_THRESHOLD} or more predictions failed within 5 minutes: an endpoint that cannot start (quota, capacity, a missing image) or a broken model. Each failed prediction's error says which.`,
        ),
      }),
      webhooksGivenUp: alarm('WebhooksGivenUp', givenUp, 1, 'A completion webhook was given up after every retry.'),
      callbackRefusals: alarm('CallbackRefusals', refused, 10, 'Many trainer callbacks refused (4xx) within 5 minutes: a misconfigured trainer or someone probing the route.'),
    };
  }

  /** An alarm nobody hears is no alarm: each one tells the topic when it fires and when it clears. */
  private notifyOn(alarms: Alarm[], topicArn: string | undefined): void {
    if (!topicArn) {
      Annotations.of(this).addWarningV2(
        'dreambooth:alarms-without-action',
        'The alarms notify nobody: set monitoring.alarm_topic_arn in the dreambooth configuration to an SNS topic you subscribe to.',
      );
      return;
    }
    const action = new SnsAction(Topic.fromTopicArn(this, 'AlarmTopic', topicArn));
    for (const a of alarms) {
      a.addAlarmAction(action);
      a.addOkAction(action);
    }
  }
}
