/**
 * One asynchronous-inference endpoint in local mode: its status (`Creating` → `InService`, or
 * `Failed` with a FailureReason, each told as an event), its instances (./instances.ts), the
 * queue of requests and one worker per invocation slot of each instance. Its instance count
 * follows the variant's scalable target (../application-autoscaling.ts), as on AWS: at zero
 * with a backlog it starts one (the step policy's path), it grows toward the maximum while the
 * backlog per instance exceeds the target, and goes back to the minimum once idle for the
 * scale-in cooldown. Without a target the count stays at the initial one. An instance that ends
 * by itself (its container exited) is replaced, as SageMaker replaces an unhealthy one.
 */
import { EventEmitter } from 'node:events';
import type { VariantScaling } from '../application-autoscaling.ts';
import { InstanceFailed, type Instance } from './instances.ts';

export type EndpointStatus = 'Creating' | 'InService' | 'Failed' | 'Deleting';

/** An endpoint config's AsyncInferenceConfig.OutputConfig. */
export interface AsyncOutputConfig {
  S3OutputPath: string;
  S3FailurePath?: string;
  NotificationConfig?: { SuccessTopic?: string; ErrorTopic?: string; IncludeInferenceResponseIn?: string[] };
}

export interface AsyncRequest {
  inferenceId: string;
  inputLocation: string;
  contentType: string;
  accept?: string;
  outputLocation: string;
  failureLocation?: string;
  invocationTimeoutSeconds: number;
  ttlSeconds: number;
  /** Epoch milliseconds. */
  received: number;
}

export interface EndpointSpec {
  name: string;
  arn: string;
  configName: string;
  variant: { VariantName: string; ModelName: string; InitialInstanceCount: number; InstanceType?: string };
  image: string;
  roleArn: string;
  async: AsyncOutputConfig;
  /** Requests one instance works on at once (ClientConfig.MaxConcurrentInvocationsPerInstance). */
  slotsPerInstance: number;
}

export interface EndpointDeps {
  startInstance(): Promise<Instance>;
  /** Runs one request to its notification; `instance` is null when the request fails unprocessed. */
  process(instance: Instance | null, req: AsyncRequest, failure?: string): Promise<void>;
  scaling(): VariantScaling | undefined;
  log(line: string): void;
}

interface Running {
  instance: Instance;
  busy: number;
}

export class LocalEndpoint extends EventEmitter {
  status: EndpointStatus = 'Creating';
  failureReason?: string;
  readonly created = Date.now();
  modified = Date.now();
  private readonly running: Running[] = [];
  private starting = 0;
  private readonly queue: AsyncRequest[] = [];
  private inFlight = 0;
  private idleTimer?: NodeJS.Timeout;

  constructor(
    readonly spec: EndpointSpec,
    private readonly deps: EndpointDeps,
  ) {
    super();
  }

  /** Starts the initial instances; `InService` once they answer, else `Failed`. */
  async create(): Promise<void> {
    try {
      await Promise.all(Array.from({ length: this.spec.variant.InitialInstanceCount }, () => this.launch(true)));
      this.setStatus('InService');
    } catch (e) {
      await this.stopAll();
      this.failureReason = e instanceof InstanceFailed ? e.message : `Failed to start the endpoint's instances: ${(e as Error).message}`;
      this.setStatus('Failed');
    }
  }

  get currentInstanceCount(): number {
    return this.running.length;
  }

  get desiredInstanceCount(): number {
    return this.running.length + this.starting;
  }

  /** Requests waiting plus being worked on (ApproximateBacklogSize). */
  get backlog(): number {
    return this.queue.length + this.inFlight;
  }

  enqueue(req: AsyncRequest): void {
    this.queue.push(req);
    clearTimeout(this.idleTimer);
    this.pump();
    this.rescale();
  }

  /** UpdateEndpointWeightsAndCapacities: out to `count` at once; in only with what is idle. */
  setInstanceCount(count: number): void {
    for (let i = this.desiredInstanceCount; i < count; i++) void this.launch();
    if (count < this.running.length) void this.scaleIn(count);
  }

  async delete(): Promise<void> {
    this.setStatus('Deleting');
    clearTimeout(this.idleTimer);
    this.queue.length = 0;
    await this.stopAll();
    this.emit('deleted');
  }

  private setStatus(status: EndpointStatus): void {
    this.status = status;
    this.modified = Date.now();
    this.emit('status', status);
  }

  /** One more instance; a failure is thrown at creation, and told (and the backlog failed when none runs) later. */
  private async launch(initial = false): Promise<void> {
    this.starting++;
    try {
      const instance = await this.deps.startInstance();
      if (this.status === 'Deleting') return void (await instance.stop());
      const slot = { instance, busy: 0 };
      this.running.push(slot);
      this.emit('instances', this.running.length);
      void instance.ended?.then((why) => this.replace(slot, why));
    } catch (e) {
      if (initial) throw e;
      this.deps.log(`endpoint ${this.spec.name}: an instance did not start: ${(e as Error).message}`);
      if (this.running.length === 0 && this.starting === 1) this.failBacklog((e as Error).message);
    } finally {
      this.starting--;
    }
    this.pump();
  }

  /** An instance that ended by itself leaves and another takes its place, as SageMaker replaces an unhealthy instance. */
  private replace(slot: Running, why: string): void {
    const at = this.running.indexOf(slot);
    if (at < 0 || this.status === 'Deleting') return;
    this.running.splice(at, 1);
    this.deps.log(`endpoint ${this.spec.name}: an instance ended (${why}); starting another`);
    this.emit('instances', this.running.length);
    void slot.instance.stop().catch(() => undefined);
    void this.launch();
  }

  private failBacklog(reason: string): void {
    for (const req of this.queue.splice(0)) void this.deps.process(null, req, reason);
  }

  /** Hands queued requests to free slots. */
  private pump(): void {
    if (this.status !== 'InService' && this.status !== 'Creating') return;
    for (const slot of this.running) {
      while (slot.busy < this.spec.slotsPerInstance && this.queue.length) {
        const req = this.queue.shift()!;
        slot.busy++;
        this.inFlight++;
        void this.deps
          .process(slot.instance, req)
          .catch((e: Error) => this.deps.log(`endpoint ${this.spec.name}: ${req.inferenceId}: ${e.message}`))
          .finally(() => {
            slot.busy--;
            this.inFlight--;
            this.pump();
            this.rescale();
          });
      }
    }
  }

  /** Toward the count the scaling asks for: out at once, in after the cooldown without work. */
  private rescale(): void {
    const scaling = this.deps.scaling();
    if (!scaling || this.status !== 'InService') return;
    const current = this.desiredInstanceCount;
    if (this.backlog > 0) {
      clearTimeout(this.idleTimer);
      this.idleTimer = undefined;
      const wanted = current === 0 && !scaling.leavesZero ? 0 : Math.ceil(this.backlog / scaling.targetBacklog);
      const desired = Math.min(scaling.max, Math.max(scaling.min, wanted));
      for (let i = current; i < desired; i++) void this.launch();
      return;
    }
    if (current > scaling.min && !this.idleTimer) {
      this.idleTimer = setTimeout(() => {
        this.idleTimer = undefined;
        void this.scaleIn(scaling.min);
      }, scaling.scaleInCooldownSeconds * 1000);
      this.idleTimer.unref();
    }
  }

  private async scaleIn(min: number): Promise<void> {
    if (this.backlog > 0) return;
    const idle = this.running.filter((r) => r.busy === 0).slice(0, Math.max(0, this.running.length - min));
    for (const r of idle) this.running.splice(this.running.indexOf(r), 1);
    this.deps.log(`endpoint ${this.spec.name}: scaled in to ${this.running.length} instance(s)`);
    this.emit('instances', this.running.length);
    await Promise.all(idle.map((r) => r.instance.stop().catch(() => undefined)));
  }

  private async stopAll(): Promise<void> {
    const all = this.running.splice(0);
    await Promise.all(all.map((r) => r.instance.stop().catch(() => undefined)));
  }
}
