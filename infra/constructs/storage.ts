/**
 * Where trainings live: one S3 bucket (uploads and staged weights) and one DynamoDB table.
 */
import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import { AttributeType, BillingMode, ProjectionType, Table, TableEncryption } from 'aws-cdk-lib/aws-dynamodb';
import { Grant, type IGrantable } from 'aws-cdk-lib/aws-iam';
import { BlockPublicAccess, Bucket, BucketEncryption, ObjectOwnership } from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';
import type { Config } from '#shared/config';
import { LOGS_PREFIX } from '#shared/run-logs';
import { SAGEMAKER_PREFIX } from '#shared/trainers/sagemaker/training-jobs';
import { IDEMPOTENCY } from '#shared/store';
import { PREDICTIONS_PREFIX } from '#shared/predictions/record';
import { WEIGHTS_PREFIX } from '#shared/weights-version';
import { PREDICTION_OWNER_INDEX } from '#shared/predictions/store';

export interface StorageProps {
  readonly config: Config;
}

/** Key prefixes of the bucket; IAM grants are scoped to them. */
export const PREFIX = {
  uploads: 'uploads/',
  staged: 'staged/',
  trainerOutputs: 'trainer-outputs/',
  sagemaker: SAGEMAKER_PREFIX,
  logs: LOGS_PREFIX,
  predictions: PREDICTIONS_PREFIX,
  /** Weights versions' weights, content-addressed (`weights/<sha256>`): kept as long as their versions, so no rule expires them. */
  weights: WEIGHTS_PREFIX,
} as const;
/** Newest-first listing of every training (tokens for all owners) and of a model's versions. */
export const LIST_INDEX = 'list';
/** Newest-first listing of one owner's trainings, so each tenant's page is full. */
export const OWNER_INDEX = 'owner';

const TABLE_ACTIONS = [
  'dynamodb:GetItem',
  'dynamodb:BatchGetItem',
  'dynamodb:Query',
  'dynamodb:PutItem',
  'dynamodb:UpdateItem',
  'dynamodb:DeleteItem',
  'dynamodb:ConditionCheckItem',
];

export class Storage extends Construct {
  readonly bucket: Bucket;
  readonly accessLogs: Bucket;
  readonly table: Table;

  constructor(scope: Construct, id: string, props: StorageProps) {
    super(scope, id);
    // Log delivery through a bucket policy, so that ACLs stay disabled on the log bucket.
    this.node.setContext('@aws-cdk/aws-s3:serverAccessLogsUseBucketPolicy', true);
    this.accessLogs = new Bucket(this, 'AccessLogs', {
      encryption: BucketEncryption.S3_MANAGED,
      enforceSSL: true,
      blockPublicAccess: BlockPublicAccess.BLOCK_ALL,
      objectOwnership: ObjectOwnership.BUCKET_OWNER_ENFORCED,
      lifecycleRules: [{ expiration: Duration.days(90) }],
      removalPolicy: RemovalPolicy.RETAIN,
    });
    this.bucket = new Bucket(this, 'Data', {
      encryption: BucketEncryption.S3_MANAGED,
      enforceSSL: true,
      blockPublicAccess: BlockPublicAccess.BLOCK_ALL,
      objectOwnership: ObjectOwnership.BUCKET_OWNER_ENFORCED,
      serverAccessLogsBucket: this.accessLogs,
      serverAccessLogsPrefix: 'data/',
      lifecycleRules: [
        { prefix: PREFIX.staged, expiration: Duration.days(props.config.retention.staged_archive_days) },
        // A training reads its upload when it leaves its trainer's queue (signed then): keep the
        // upload a day past the longest wait there.
        { prefix: PREFIX.uploads, expiration: Duration.days(1 + Math.ceil(props.config.timeouts.queue_seconds / 86_400)) },
        // The demo trainer's outputs: staged copies are what the pipeline keeps.
        { prefix: PREFIX.trainerOutputs, expiration: Duration.days(1) },
        // SageMaker jobs' request channels (the user's photos), outputs and checkpoints.
        { prefix: PREFIX.sagemaker, expiration: Duration.days(props.config.retention.staged_archive_days) },
        // Trainer logs longer than the record keeps (lambdas/shared/run-logs.ts).
        { prefix: PREFIX.logs, expiration: Duration.days(props.config.retention.staged_archive_days) },
        // A prediction's request, response and files: a customer's prompts and pictures are theirs.
        { prefix: PREFIX.predictions, expiration: Duration.days(props.config.retention.prediction_days) },
        { abortIncompleteMultipartUploadAfter: Duration.days(1) },
      ],
      removalPolicy: RemovalPolicy.RETAIN,
    });
    this.table = this.createTable();
  }

  /** Trainings, versions, predictions and idempotency keys; the indexes that list them newest first. */
  private createTable(): Table {
    const table = new Table(this, 'Table', {
      partitionKey: { name: 'pk', type: AttributeType.STRING },
      sortKey: { name: 'sk', type: AttributeType.STRING },
      billingMode: BillingMode.PAY_PER_REQUEST,
      encryption: TableEncryption.AWS_MANAGED,
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      // Idempotency-Key records (24 h) and predictions (retention.prediction_days) expire.
      timeToLiveAttribute: IDEMPOTENCY.expiryAttribute,
      removalPolicy: RemovalPolicy.RETAIN,
    });
    table.addGlobalSecondaryIndex({
      indexName: LIST_INDEX,
      partitionKey: { name: 'listpk', type: AttributeType.STRING },
      sortKey: { name: 'listsk', type: AttributeType.STRING },
      projectionType: ProjectionType.ALL,
    });
    // Keyed by the training's own `owner` attribute: only trainings carry it.
    table.addGlobalSecondaryIndex({
      indexName: OWNER_INDEX,
      partitionKey: { name: 'owner', type: AttributeType.STRING },
      sortKey: { name: 'listsk', type: AttributeType.STRING },
      projectionType: ProjectionType.ALL,
    });
    // One owner's predictions, newest first (lambdas/shared/predictions/store.ts).
    table.addGlobalSecondaryIndex({
      indexName: PREDICTION_OWNER_INDEX,
      partitionKey: { name: 'prediction_owner', type: AttributeType.STRING },
      sortKey: { name: 'listsk', type: AttributeType.STRING },
      projectionType: ProjectionType.ALL,
    });
    return table;
  }

  /** Item reads and writes on the table and its index; no Scan, no table management. */
  grantTableReadWrite(grantee: IGrantable): Grant {
    const indexes = [LIST_INDEX, OWNER_INDEX, PREDICTION_OWNER_INDEX].map((i) => `${this.table.tableArn}/index/${i}`);
    return Grant.addToPrincipal({ grantee, actions: TABLE_ACTIONS, resourceArns: [this.table.tableArn, ...indexes] });
  }

  /** Reads of single items by key, nothing else. */
  grantItemRead(grantee: IGrantable): Grant {
    return Grant.addToPrincipal({ grantee, actions: ['dynamodb:GetItem'], resourceArns: [this.table.tableArn] });
  }

  /** Object actions under one key prefix of the data bucket. */
  grantObjects(grantee: IGrantable, prefix: (typeof PREFIX)[keyof typeof PREFIX], actions: string[]): Grant {
    return Grant.addToPrincipal({ grantee, actions, resourceArns: [this.bucket.arnForObjects(`${prefix}*`)] });
  }
}
