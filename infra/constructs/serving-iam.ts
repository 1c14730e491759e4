/**
 * The prediction endpoints' IAM, scoped to this stack's endpoint prefix: the role every
 * endpoint runs with, and the rights of the functions that make, scale, delete and invoke them.
 */
import { ArnFormat, Stack } from 'aws-cdk-lib';
import { type IGrantable, PolicyStatement, Role, ServicePrincipal } from 'aws-cdk-lib/aws-iam';
import type { ITopic } from 'aws-cdk-lib/aws-sns';
import type { Construct } from 'constructs';
import { PREDICTIONS_PREFIX } from '#shared/predictions/record';
import type { Storage } from './storage.ts';

export interface EndpointRoleProps {
  readonly storage: Storage;
  /** The model registry's ECR repositories (`<prefix>/*`), or none when models are pushed elsewhere. */
  readonly repositoryPrefix?: string;
  readonly topics: readonly ITopic[];
  readonly endpointPrefix: string;
}

/** SageMaker's endpoint log group names start here, one group per endpoint. */
const ENDPOINT_LOGS = '/aws/sagemaker/Endpoints/';

/**
 * Pulls the model versions' images, reads the requests and writes the responses under the
 * predictions prefix only, notifies the two topics, writes its logs and metrics.
 */
export function createEndpointRole(scope: Construct, props: EndpointRoleProps): Role {
  const role = new Role(scope, 'EndpointRole', {
    assumedBy: new ServicePrincipal('sagemaker.amazonaws.com'),
    description: 'dreambooth-api: the role of each prediction endpoint (one per model version).',
  });
  const objects = (pattern: string) => props.storage.bucket.arnForObjects(`${PREDICTIONS_PREFIX}${pattern}`);
  role.addToPolicy(new PolicyStatement({ actions: ['s3:GetObject'], resources: [objects('*/request.json')] }));
  // Asynchronous inference names a response (or a failure) after the request's inference id.
  role.addToPolicy(new PolicyStatement({ actions: ['s3:PutObject', 's3:AbortMultipartUpload'], resources: [objects('*.out')] }));
  for (const topic of props.topics) topic.grantPublish(role);
  const stack = Stack.of(scope);
  if (props.repositoryPrefix !== undefined) {
    const repositories = stack.formatArn({
      service: 'ecr',
      resource: 'repository',
      resourceName: props.repositoryPrefix ? `${props.repositoryPrefix}/*` : '*',
    });
    role.addToPolicy(
      new PolicyStatement({
        actions: ['ecr:BatchGetImage', 'ecr:GetDownloadUrlForLayer', 'ecr:BatchCheckLayerAvailability'],
        resources: [repositories],
      }),
    );
    // GetAuthorizationToken is account-wide: it takes no resource.
    role.addToPolicy(new PolicyStatement({ actions: ['ecr:GetAuthorizationToken'], resources: ['*'] }));
  }
  const logGroups = stack.formatArn({
    service: 'logs',
    resource: 'log-group',
    resourceName: `${ENDPOINT_LOGS}${props.endpointPrefix}*`,
    arnFormat: ArnFormat.COLON_RESOURCE_NAME,
  });
  role.addToPolicy(new PolicyStatement({ actions: ['logs:CreateLogGroup', 'logs:DescribeLogStreams'], resources: [logGroups] }));
  role.addToPolicy(
    new PolicyStatement({ actions: ['logs:CreateLogStream', 'logs:PutLogEvents'], resources: [`${logGroups}:log-stream:*`] }),
  );
  role.addToPolicy(
    new PolicyStatement({
      actions: ['cloudwatch:PutMetricData'],
      resources: ['*'],
      conditions: { StringLike: { 'cloudwatch:namespace': '/aws/sagemaker/*' } },
    }),
  );
  return role;
}

/** Every right is on this stack's names: endpoints, their configurations and models share one. */
export function grantEndpoints(grantee: IGrantable, role: Role, endpointPrefix: string): void {
  const stack = Stack.of(role);
  const arn = (resource: string) => stack.formatArn({ service: 'sagemaker', resource, resourceName: `${endpointPrefix}*` });
  const add = (s: PolicyStatement) => grantee.grantPrincipal.addToPrincipalPolicy(s);
  add(
    new PolicyStatement({
      actions: [
        'sagemaker:CreateModel',
        'sagemaker:DeleteModel',
        'sagemaker:CreateEndpointConfig',
        'sagemaker:DescribeEndpointConfig',
        'sagemaker:DeleteEndpointConfig',
        'sagemaker:CreateEndpoint',
        'sagemaker:DescribeEndpoint',
        'sagemaker:DeleteEndpoint',
        // Waking an endpoint at zero; Application Auto Scaling also requires it of whoever registers the endpoint.
        'sagemaker:UpdateEndpointWeightsAndCapacities',
        // Creating with tags.
        'sagemaker:AddTags',
      ],
      resources: [arn('model'), arn('endpoint-config'), arn('endpoint')],
    }),
  );
  // ListEndpoints takes no resource; the sweep keeps to the prefix's names.
  add(new PolicyStatement({ actions: ['sagemaker:ListEndpoints'], resources: ['*'] }));
  add(
    new PolicyStatement({
      actions: ['iam:PassRole'],
      resources: [role.roleArn],
      conditions: { StringEquals: { 'iam:PassedToService': 'sagemaker.amazonaws.com' } },
    }),
  );
  grantScaling(grantee, stack, endpointPrefix);
}

/** Application Auto Scaling on the endpoints, and their scale-from-zero alarms. */
function grantScaling(grantee: IGrantable, stack: Stack, endpointPrefix: string): void {
  const add = (s: PolicyStatement) => grantee.grantPrincipal.addToPrincipalPolicy(s);
  // Scalable targets and policies are named by generated ids, not by the endpoint: no resource to scope to.
  add(
    new PolicyStatement({
      actions: [
        'application-autoscaling:RegisterScalableTarget',
        'application-autoscaling:DescribeScalableTargets',
        'application-autoscaling:DeregisterScalableTarget',
        'application-autoscaling:PutScalingPolicy',
      ],
      resources: ['*'],
    }),
  );
  add(
    new PolicyStatement({
      actions: ['cloudwatch:PutMetricAlarm', 'cloudwatch:DeleteAlarms'],
      resources: [
        stack.formatArn({
          service: 'cloudwatch',
          resource: 'alarm',
          resourceName: `${endpointPrefix}*`,
          arnFormat: ArnFormat.COLON_RESOURCE_NAME,
        }),
      ],
    }),
  );
  // The first RegisterScalableTarget of an account creates Application Auto Scaling's role for SageMaker endpoints.
  add(
    new PolicyStatement({
      actions: ['iam:CreateServiceLinkedRole'],
      resources: [
        stack.formatArn({
          service: 'iam',
          region: '',
          resource: 'role',
          resourceName:
            'aws-service-role/sagemaker.application-autoscaling.amazonaws.com/AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint',
        }),
      ],
      conditions: { StringLike: { 'iam:AWSServiceName': 'sagemaker.application-autoscaling.amazonaws.com' } },
    }),
  );
}

/** InvokeEndpointAsync on this stack's endpoints. */
export function grantInvoke(grantee: IGrantable, scope: Construct, endpointPrefix: string): void {
  const endpoints = Stack.of(scope).formatArn({ service: 'sagemaker', resource: 'endpoint', resourceName: `${endpointPrefix}*` });
  grantee.grantPrincipal.addToPrincipalPolicy(new PolicyStatement({ actions: ['sagemaker:InvokeEndpointAsync'], resources: [endpoints] }));
}
