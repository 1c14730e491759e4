/**
 * SageMaker hosting's control plane in local mode (CreateModel, CreateEndpointConfig,
 * CreateEndpoint, Describe*, Delete*, ListEndpoints), validated as SageMaker validates them and
 * refused with its error codes; with Application Auto Scaling (../application-autoscaling.ts)
 * and CloudWatch (../cloudwatch.ts), which only ever concern its endpoints, and the runtime's
 * InvokeEndpointAsync (./runtime.ts). An endpoint's life is ./endpoints.ts; its instances,
 * ./instances.ts. State lives in memory: after a restart, endpoints are created again on demand.
 */
import { z } from 'zod';
import { LocalApplicationAutoScaling } from '../application-autoscaling.ts';
import { LocalCloudWatch } from '../cloudwatch.ts';
import type { RestOperation } from '../endpoint.ts';
import { AwsError } from '../errors.ts';
import { sagemakerArn } from '../names.ts';
import { LocalEndpoint } from './endpoints.ts';
import { removeOrphanedContainers } from './inference-container.ts';
import { imageLabels, startInstance, type InstanceFailed } from './instances.ts';
import { invokeEndpointAsync, processRequest, type RuntimeContext } from './runtime.ts';

const NAME = /^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$/;
const Name = (member: string) =>
  z.string().refine((v) => NAME.test(v), {
    error: (issue) => `Value '${String(issue.input)}' at '${member}' failed to satisfy constraint: Member must satisfy regular expression pattern: ${NAME.source}`,
  });

const CreateModel = z.object({
  ModelName: Name('modelName'),
  ExecutionRoleArn: z.string().regex(/^arn:aws[a-z-]*:iam::\d{12}:role\/?[\w+=,.@/-]+$/, 'ExecutionRoleArn must be the ARN of an IAM role'),
  PrimaryContainer: z.object({ Image: z.string().min(1), Environment: z.record(z.string(), z.string()).optional() }).passthrough(),
  Tags: z.array(z.object({ Key: z.string(), Value: z.string() })).optional(),
});
const Variant = z
  .object({
    VariantName: Name('variantName'),
    ModelName: Name('modelName'),
    InitialInstanceCount: z.number().int().min(1).optional(),
    InstanceType: z.string().optional(),
  })
  .passthrough();
const CreateEndpointConfig = z.object({
  EndpointConfigName: Name('endpointConfigName'),
  ProductionVariants: z.array(Variant).min(1).max(10),
  AsyncInferenceConfig: z
    .object({
      OutputConfig: z.object({
        S3OutputPath: z.string().regex(/^s3:\/\//, 'S3OutputPath must be an s3:// URI'),
        S3FailurePath: z.string().regex(/^s3:\/\//, 'S3FailurePath must be an s3:// URI').optional(),
        NotificationConfig: z.object({ SuccessTopic: z.string().optional(), ErrorTopic: z.string().optional(), IncludeInferenceResponseIn: z.array(z.string()).optional() }).optional(),
      }),
      ClientConfig: z.object({ MaxConcurrentInvocationsPerInstance: z.number().int().min(1).max(1000).optional() }).optional(),
    })
    .optional(),
  Tags: z.array(z.object({ Key: z.string(), Value: z.string() })).optional(),
});
const CreateEndpoint = z.object({ EndpointName: Name('endpointName'), EndpointConfigName: Name('endpointConfigName') }).passthrough();
const EndpointRef = z.object({ EndpointName: Name('endpointName') });
const UpdateCapacities = EndpointRef.extend({
  DesiredWeightsAndCapacities: z.array(z.object({ VariantName: Name('variantName'), DesiredInstanceCount: z.number().int().min(0).optional() })).min(1),
});
const ConfigRef = z.object({ EndpointConfigName: Name('endpointConfigName') });
const ModelRef = z.object({ ModelName: Name('modelName') });

type Model = z.infer<typeof CreateModel> & { created: number };
type EndpointConfig = z.infer<typeof CreateEndpointConfig> & { created: number };
type Operation = (body: unknown) => unknown;

export interface HostingOptions extends RuntimeContext {
  /** How long a container may take to answer `/ping`. */
  startSeconds?: number;
  /**
   * The local mode's id (its data directory's): it labels endpoint containers, and those an
   * earlier run left are removed before this one starts any.
   */
  owner?: string;
}

export class LocalHosting {
  readonly autoScaling = new LocalApplicationAutoScaling((e, v) => this.endpoint(e)?.spec.variant.VariantName === v);
  readonly cloudWatch = new LocalCloudWatch();
  // Names are case-insensitive in SageMaker: kept by their lower-case form.
  private readonly models = new Map<string, Model>();
  private readonly configs = new Map<string, EndpointConfig>();
  private readonly endpoints = new Map<string, LocalEndpoint>();

  /** The earlier run's endpoint containers removed (see HostingOptions.owner). */
  private readonly swept: Promise<unknown>;

  constructor(private readonly opts: HostingOptions) {
    this.swept = opts.owner ? removeOrphanedContainers(opts.owner, opts.log) : Promise.resolve();
  }

  /** An endpoint by name, as the runtime and the tests reach it. */
  endpoint(name: string): LocalEndpoint | undefined {
    return this.endpoints.get(name.toLowerCase());
  }

  runtime(): RestOperation {
    return invokeEndpointAsync((name) => this.endpoint(name));
  }

  api(): Record<string, Operation> {
    return {
      CreateModel: (body) => this.createModel(CreateModel.parse(body)),
      DescribeModel: (body) => {
        const m = this.model(ModelRef.parse(body).ModelName);
        return { ModelName: m.ModelName, ModelArn: sagemakerArn('model', m.ModelName), ExecutionRoleArn: m.ExecutionRoleArn, PrimaryContainer: m.PrimaryContainer, CreationTime: m.created / 1000 };
      },
      DeleteModel: (body) => {
        this.models.delete(this.model(ModelRef.parse(body).ModelName).ModelName.toLowerCase());
        return {};
      },
      CreateEndpointConfig: (body) => this.createConfig(CreateEndpointConfig.parse(body)),
      DescribeEndpointConfig: (body) => {
        const { created, Tags: _, ...c } = this.config(ConfigRef.parse(body).EndpointConfigName);
        return { ...c, EndpointConfigArn: sagemakerArn('endpoint-config', c.EndpointConfigName), CreationTime: created / 1000 };
      },
      DeleteEndpointConfig: (body) => {
        this.configs.delete(this.config(ConfigRef.parse(body).EndpointConfigName).EndpointConfigName.toLowerCase());
        return {};
      },
      CreateEndpoint: (body) => this.createEndpoint(CreateEndpoint.parse(body)),
      DescribeEndpoint: (body) => describe(this.existing(EndpointRef.parse(body).EndpointName)),
      // What wakes an endpoint from zero by hand (the scaling policies do it for a queued request).
      UpdateEndpointWeightsAndCapacities: (body) => {
        const req = UpdateCapacities.parse(body);
        const endpoint = this.existing(req.EndpointName);
        if (endpoint.status !== 'InService') {
          throw new AwsError('ValidationException', `Cannot update in-progress endpoint "${endpoint.spec.arn}".`);
        }
        const count = req.DesiredWeightsAndCapacities[0]!.DesiredInstanceCount;
        if (count !== undefined) endpoint.setInstanceCount(count);
        return { EndpointArn: endpoint.spec.arn };
      },
      DeleteEndpoint: (body) => {
        const endpoint = this.existing(EndpointRef.parse(body).EndpointName);
        this.endpoints.delete(endpoint.spec.name.toLowerCase());
        void endpoint.delete();
        return {};
      },
      ListEndpoints: () => ({
        Endpoints: [...this.endpoints.values()].map((e) => ({
          EndpointName: e.spec.name,
          EndpointArn: e.spec.arn,
          EndpointStatus: e.status,
          CreationTime: e.created / 1000,
          LastModifiedTime: e.modified / 1000,
        })),
      }),
    };
  }

  /** Stops every endpoint's instances. */
  async close(): Promise<void> {
    const all = [...this.endpoints.values()];
    this.endpoints.clear();
    await Promise.all(all.map((e) => e.delete()));
  }

  private async createModel(req: z.infer<typeof CreateModel>) {
    const arn = sagemakerArn('model', req.ModelName);
    if (this.models.has(req.ModelName.toLowerCase())) throw new AwsError('ValidationException', `Cannot create already existing model "${arn}".`);
    // SageMaker checks the image is there when the model is created.
    await imageLabels(req.PrimaryContainer.Image).catch((e: InstanceFailed) => {
      throw new AwsError('ValidationException', `Requested image ${req.PrimaryContainer.Image} not found. ${e.message}`);
    });
    this.models.set(req.ModelName.toLowerCase(), { ...req, created: Date.now() });
    return { ModelArn: arn };
  }

  private createConfig(req: z.infer<typeof CreateEndpointConfig>) {
    const arn = sagemakerArn('endpoint-config', req.EndpointConfigName);
    if (this.configs.has(req.EndpointConfigName.toLowerCase())) throw new AwsError('ValidationException', `Cannot create already existing endpoint configuration "${arn}".`);
    for (const v of req.ProductionVariants) this.model(v.ModelName);
    if (req.AsyncInferenceConfig && req.ProductionVariants.length > 1) throw new AwsError('ValidationException', 'local mode serves one production variant per asynchronous endpoint');
    this.configs.set(req.EndpointConfigName.toLowerCase(), { ...req, created: Date.now() });
    return { EndpointConfigArn: arn };
  }

  private createEndpoint(req: z.infer<typeof CreateEndpoint>) {
    const arn = sagemakerArn('endpoint', req.EndpointName);
    if (this.endpoints.has(req.EndpointName.toLowerCase())) throw new AwsError('ValidationException', `Cannot create already existing endpoint "${arn}".`);
    const config = this.config(req.EndpointConfigName);
    if (!config.AsyncInferenceConfig) throw new AwsError('ValidationException', 'local mode serves asynchronous inference endpoints only (the endpoint configuration has no AsyncInferenceConfig)');
    const variant = config.ProductionVariants[0]!;
    const model = this.model(variant.ModelName);
    const endpoint: LocalEndpoint = new LocalEndpoint(
      {
        name: req.EndpointName,
        arn,
        configName: config.EndpointConfigName,
        variant: { ...variant, InitialInstanceCount: variant.InitialInstanceCount ?? 1 },
        image: model.PrimaryContainer.Image,
        roleArn: model.ExecutionRoleArn,
        async: config.AsyncInferenceConfig.OutputConfig,
        slotsPerInstance: config.AsyncInferenceConfig.ClientConfig?.MaxConcurrentInvocationsPerInstance ?? 1,
      },
      {
        startInstance: async () => {
          await this.swept;
          const { log, startSeconds, owner } = this.opts;
          return startInstance(req.EndpointName, model.PrimaryContainer.Image, { log, startSeconds, owner, environment: model.PrimaryContainer.Environment });
        },
        process: (instance, r, failure) => processRequest(this.opts, endpoint, instance, r, failure),
        scaling: () => this.autoScaling.scalingOf(req.EndpointName, variant.VariantName),
        log: this.opts.log,
      },
    );
    this.endpoints.set(req.EndpointName.toLowerCase(), endpoint);
    endpoint.on('status', (status) => this.opts.log(`endpoint ${req.EndpointName}: ${status}${endpoint.failureReason ? ` (${endpoint.failureReason})` : ''}`));
    void endpoint.create();
    return { EndpointArn: arn };
  }

  private model(name: string): Model {
    const m = this.models.get(name.toLowerCase());
    if (!m) throw new AwsError('ValidationException', `Could not find model "${sagemakerArn('model', name)}".`);
    return m;
  }

  private config(name: string): EndpointConfig {
    const c = this.configs.get(name.toLowerCase());
    if (!c) throw new AwsError('ValidationException', `Could not find endpoint configuration "${sagemakerArn('endpoint-config', name)}".`);
    return c;
  }

  private existing(name: string): LocalEndpoint {
    const e = this.endpoint(name);
    if (!e) throw new AwsError('ValidationException', `Could not find endpoint "${sagemakerArn('endpoint', name)}".`);
    return e;
  }
}

function describe(e: LocalEndpoint) {
  return {
    EndpointName: e.spec.name,
    EndpointArn: e.spec.arn,
    EndpointConfigName: e.spec.configName,
    EndpointStatus: e.status,
    FailureReason: e.failureReason,
    CreationTime: e.created / 1000,
    LastModifiedTime: e.modified / 1000,
    ProductionVariants:
      e.status === 'Failed'
        ? undefined
        : [
            {
              VariantName: e.spec.variant.VariantName,
              CurrentInstanceCount: e.currentInstanceCount,
              DesiredInstanceCount: e.desiredInstanceCount,
              CurrentWeight: 1,
              DesiredWeight: 1,
            },
          ],
    AsyncInferenceConfig: { OutputConfig: e.spec.async },
  };
}
