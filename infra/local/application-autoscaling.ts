/**
 * Application Auto Scaling in local mode, for SageMaker endpoint variants: the scalable targets
 * (min and max instances) and their scaling policies, which the hosting stand-in
 * (./sagemaker/endpoints.ts) reads to scale an endpoint's instances — a target tracking policy's
 * target value and scale-in cooldown, and whether a step scaling policy lets it leave zero
 * (the `HasBacklogWithoutCapacity` alarm's path on AWS).
 */
import { z } from 'zod';
import { AwsError } from './errors.ts';
import { LOCAL_ACCOUNT, LOCAL_REGION } from './names.ts';

const SAGEMAKER_DIMENSION = 'sagemaker:variant:DesiredInstanceCount';
const RESOURCE_ID = /^endpoint\/([^/]+)\/variant\/([^/]+)$/;

const TargetKey = z.object({ ServiceNamespace: z.string(), ResourceId: z.string(), ScalableDimension: z.string() });
const Register = TargetKey.extend({
  MinCapacity: z.number().int().min(0).optional(),
  MaxCapacity: z.number().int().min(0).optional(),
  RoleARN: z.string().optional(),
});
const PutPolicy = TargetKey.extend({
  PolicyName: z.string().min(1).max(256),
  PolicyType: z.enum(['TargetTrackingScaling', 'StepScaling', 'PredictiveScaling']).default('StepScaling'),
  TargetTrackingScalingPolicyConfiguration: z
    .object({ TargetValue: z.number(), ScaleInCooldown: z.number().int().optional(), ScaleOutCooldown: z.number().int().optional() })
    .passthrough()
    .optional(),
  StepScalingPolicyConfiguration: z.object({}).passthrough().optional(),
});
const Describe = z.object({ ServiceNamespace: z.string(), ResourceIds: z.array(z.string()).optional(), ScalableDimension: z.string().optional() });
const DeletePolicy = TargetKey.extend({ PolicyName: z.string() });

export interface ScalableTarget {
  ResourceId: string;
  ScalableDimension: string;
  ServiceNamespace: string;
  MinCapacity: number;
  MaxCapacity: number;
  RoleARN?: string;
  CreationTime: number;
  ScalableTargetARN: string;
  policies: Map<string, z.infer<typeof PutPolicy>>;
}

/** How an endpoint variant may scale, as the hosting stand-in reads it. */
export interface VariantScaling {
  min: number;
  max: number;
  /** Backlog per instance the target tracking policy aims at. */
  targetBacklog: number;
  /** Seconds without work before scaling in. */
  scaleInCooldownSeconds: number;
  /** A step scaling policy exists: an endpoint at zero with a backlog gets an instance. */
  leavesZero: boolean;
}

type Operation = (body: unknown) => unknown;

export class LocalApplicationAutoScaling {
  private readonly targets = new Map<string, ScalableTarget>();
  private seq = 0;

  /** `variantExists`: the hosting stand-in's answer, as AWS checks a target's resource exists. */
  constructor(private readonly variantExists: (endpoint: string, variant: string) => boolean) {}

  /** The scaling of an endpoint variant, when a target is registered for it. */
  scalingOf(endpoint: string, variant: string): VariantScaling | undefined {
    const t = this.targets.get(key({ ServiceNamespace: 'sagemaker', ResourceId: `endpoint/${endpoint}/variant/${variant}`, ScalableDimension: SAGEMAKER_DIMENSION }));
    if (!t) return undefined;
    const policies = [...t.policies.values()];
    const tracking = policies.find((p) => p.PolicyType === 'TargetTrackingScaling')?.TargetTrackingScalingPolicyConfiguration;
    return {
      min: t.MinCapacity,
      max: t.MaxCapacity,
      targetBacklog: tracking?.TargetValue && tracking.TargetValue > 0 ? tracking.TargetValue : 1,
      scaleInCooldownSeconds: tracking?.ScaleInCooldown ?? 300,
      leavesZero: policies.some((p) => p.PolicyType === 'StepScaling'),
    };
  }

  /** Deleting an endpoint leaves its targets registered on AWS; they stop mattering once it is gone. */
  api(): Record<string, Operation> {
    return {
      RegisterScalableTarget: (body) => this.register(Register.parse(body)),
      DeregisterScalableTarget: (body) => {
        const k = key(TargetKey.parse(body));
        if (!this.targets.delete(k)) throw notFound(TargetKey.parse(body));
        return {};
      },
      DescribeScalableTargets: (body) => {
        const req = Describe.parse(body);
        const found = [...this.targets.values()].filter(
          (t) => t.ServiceNamespace === req.ServiceNamespace && (!req.ResourceIds || req.ResourceIds.includes(t.ResourceId)) && (!req.ScalableDimension || req.ScalableDimension === t.ScalableDimension),
        );
        return { ScalableTargets: found.map(({ policies: _, CreationTime, ...t }) => ({ ...t, CreationTime: CreationTime / 1000 })) };
      },
      PutScalingPolicy: (body) => {
        const req = PutPolicy.parse(body);
        const target = this.targets.get(key(req));
        if (!target) throw notFound(req);
        target.policies.set(req.PolicyName, req);
        return { PolicyARN: policyArn(req.ResourceId, req.PolicyName), Alarms: [] };
      },
      DeleteScalingPolicy: (body) => {
        const req = DeletePolicy.parse(body);
        if (!this.targets.get(key(req))?.policies.delete(req.PolicyName)) {
          throw new AwsError('ObjectNotFoundException', `No scaling policy found for service namespace: ${req.ServiceNamespace}, resource ID: ${req.ResourceId}, scalable dimension: ${req.ScalableDimension}, policy name: ${req.PolicyName}`);
        }
        return {};
      },
      DescribeScalingPolicies: (body) => {
        const req = Describe.parse(body);
        const policies = [...this.targets.values()]
          .filter((t) => t.ServiceNamespace === req.ServiceNamespace && (!req.ResourceIds || req.ResourceIds.includes(t.ResourceId)))
          .flatMap((t) => [...t.policies.values()].map((p) => ({ ...p, PolicyARN: policyArn(p.ResourceId, p.PolicyName), Alarms: [] })));
        return { ScalingPolicies: policies };
      },
    };
  }

  private register(req: z.infer<typeof Register>) {
    if (req.ServiceNamespace !== 'sagemaker' || req.ScalableDimension !== SAGEMAKER_DIMENSION) {
      throw new AwsError('ValidationException', `local mode scales only SageMaker endpoint variants (${SAGEMAKER_DIMENSION})`);
    }
    const m = RESOURCE_ID.exec(req.ResourceId);
    if (!m || !this.variantExists(m[1]!, m[2]!)) {
      throw new AwsError('ValidationException', `The endpoint variant in resource ID ${req.ResourceId} does not exist`);
    }
    const existing = this.targets.get(key(req));
    const min = req.MinCapacity ?? existing?.MinCapacity;
    const max = req.MaxCapacity ?? existing?.MaxCapacity;
    if (min === undefined || max === undefined) throw new AwsError('ValidationException', 'MinCapacity and MaxCapacity are required to register a new scalable target');
    if (min > max) throw new AwsError('ValidationException', `Minimum capacity (${min}) cannot be greater than maximum capacity (${max})`);
    const target: ScalableTarget = existing ?? {
      ResourceId: req.ResourceId,
      ScalableDimension: req.ScalableDimension,
      ServiceNamespace: req.ServiceNamespace,
      MinCapacity: min,
      MaxCapacity: max,
      CreationTime: Date.now(),
      ScalableTargetARN: `arn:aws:application-autoscaling:${LOCAL_REGION}:${LOCAL_ACCOUNT}:scalable-target/${(++this.seq).toString(16).padStart(28, '0')}`,
      policies: new Map(),
    };
    Object.assign(target, { MinCapacity: min, MaxCapacity: max, RoleARN: req.RoleARN ?? target.RoleARN });
    this.targets.set(key(req), target);
    return { ScalableTargetARN: target.ScalableTargetARN };
  }
}

const key = (t: z.infer<typeof TargetKey>) => `${t.ServiceNamespace}|${t.ResourceId}|${t.ScalableDimension}`;

const notFound = (t: z.infer<typeof TargetKey>) =>
  new AwsError('ObjectNotFoundException', `No scalable target registered for service namespace: ${t.ServiceNamespace}, resource ID: ${t.ResourceId}, scalable dimension: ${t.ScalableDimension}`);

const policyArn = (resourceId: string, name: string) =>
  `arn:aws:autoscaling:${LOCAL_REGION}:${LOCAL_ACCOUNT}:scalingPolicy:local:resource/sagemaker/${resourceId}:policyName/${name}`;
