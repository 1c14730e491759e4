/**
 * The deployment as local mode sees it: the CloudFormation template CDK synthesizes (in-process,
 * no bundling, no network), and what local mode reads from it — the state machine (infra/asl.ts)
 * and the REST API's routes, gateway responses and integrations (here) — so that local mode
 * serves exactly what API Gateway would.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { App, type CfnElement } from 'aws-cdk-lib';
import type { Config } from '#shared/config';
import { HouseFunction, type HandlerName } from './constructs/function.ts';
import { DreamboothStack } from './stack.ts';

export interface CfnResource {
  Type: string;
  // biome-ignore lint/suspicious/noExplicitAny: a synthesized resource's properties, as CloudFormation has them
  Properties?: Record<string, any>;
}
export interface CfnTemplate {
  Resources: Record<string, CfnResource>;
}

/** One house function of the template. */
export interface SynthesizedFunction {
  name: HandlerName;
  /** Logical ids of the function and of its execution role (its policies name the role). */
  logicalId: string;
  roleLogicalId: string;
}

export interface Synthesized {
  template: CfnTemplate;
  functions: SynthesizedFunction[];
  /** The stack object, for what only the construct tree knows (e.g. the function declarations). */
  stack: DreamboothStack;
}

/** Synthesizes the stack as `cdk synth` does, into a temporary directory removed afterwards. */
export function synthesize(config: Config): Synthesized {
  const outdir = mkdtempSync(join(tmpdir(), 'dreambooth-synth-'));
  try {
    // An empty bundling-stacks list makes NodejsFunction skip esbuild entirely.
    const app = new App({ outdir, context: { 'aws:cdk:bundling-stacks': [] } });
    const stack = new DreamboothStack(app, 'Dreambooth', { config });
    const template = app.synth().getStackByName(stack.stackName).template as CfnTemplate;
    const functions = HouseFunction.all(stack).map((fn) => ({
      name: fn.handlerName,
      logicalId: stack.getLogicalId(fn.node.defaultChild as CfnElement),
      roleLogicalId: stack.getLogicalId(fn.role!.node.defaultChild as CfnElement),
    }));
    return { template, functions, stack };
  } finally {
    rmSync(outdir, { recursive: true, force: true });
  }
}

/** A method of the REST API as local mode serves it. */
export interface LocalRoute {
  method: string;
  /** The resource path, e.g. `/v1/trainings/{id}`: what API Gateway puts in `event.resource`. */
  path: string;
  /** The TOKEN authorizer's function, or null for a method with authorization NONE. */
  authorizer: HandlerName | null;
  /** The function of its Lambda proxy integration. */
  fn: HandlerName;
}

/** A gateway response: what API Gateway answers itself (no route, no or a bad token). */
export interface LocalGatewayResponse {
  status: number;
  body: string;
  headers: Record<string, string>;
}

export interface LocalApi {
  routes: LocalRoute[];
  /** By ResponseType (`MISSING_AUTHENTICATION_TOKEN`, `UNAUTHORIZED`, …). */
  gatewayResponses: Record<string, LocalGatewayResponse>;
}

const ofType = (t: CfnTemplate, type: string) => Object.entries(t.Resources).filter(([, r]) => r.Type === type);

/** The REST API's methods and gateway responses, read from the template. */
export function restApiOf(synth: Pick<Synthesized, 'template' | 'functions'>): LocalApi {
  const { template } = synth;
  const fnByLogicalId = new Map(synth.functions.map((f) => [f.logicalId, f.name]));
  const functionOf = (uri: unknown, what: string): HandlerName => {
    const ids = JSON.stringify(uri).match(/"Fn::GetAtt":\["([^"]+)","Arn"\]/);
    const name = ids && fnByLogicalId.get(ids[1]!);
    if (!name) throw new Error(`${what} integrates ${JSON.stringify(uri)}, which is not a house function local mode can run`);
    return name;
  };
  const paths = new Map<string, string>();
  const pathOf = (id: string): string => {
    const known = paths.get(id);
    if (known !== undefined) return known;
    const r = template.Resources[id]!.Properties!;
    const path = `${r.ParentId.Ref ? pathOf(r.ParentId.Ref) : ''}/${r.PathPart}`;
    paths.set(id, path);
    return path;
  };
  const authorizers = new Map(
    ofType(template, 'AWS::ApiGateway::Authorizer').map(([id, a]) => {
      if (a.Properties!.Type !== 'TOKEN') throw new Error(`authorizer ${id} is ${a.Properties!.Type}; local mode runs TOKEN authorizers`);
      return [id, functionOf(a.Properties!.AuthorizerUri, `authorizer ${id}`)];
    }),
  );
  const routes = ofType(template, 'AWS::ApiGateway::Method').map(([id, m]): LocalRoute => {
    const p = m.Properties!;
    if (p.Integration?.Type !== 'AWS_PROXY') throw new Error(`method ${id} has a ${p.Integration?.Type} integration; local mode serves Lambda proxy integrations`);
    const resource = p.ResourceId.Ref ? pathOf(p.ResourceId.Ref) : '/';
    const authorizer = p.AuthorizationType === 'CUSTOM' ? authorizers.get(p.AuthorizerId.Ref) : null;
    if (authorizer === undefined || !['CUSTOM', 'NONE'].includes(p.AuthorizationType)) {
      throw new Error(`method ${id} uses authorization ${p.AuthorizationType}, which local mode cannot check`);
    }
    return { method: p.HttpMethod, path: resource, authorizer, fn: functionOf(p.Integration.Uri, `method ${p.HttpMethod} ${resource}`) };
  });
  const gatewayResponses = Object.fromEntries(
    ofType(template, 'AWS::ApiGateway::GatewayResponse').map(([, g]) => {
      const p = g.Properties!;
      const headers = Object.fromEntries(
        Object.entries((p.ResponseParameters ?? {}) as Record<string, string>).map(([k, v]) => [k.replace(/^gatewayresponse\.header\./, ''), v.replace(/^'|'$/g, '')]),
      );
      const body = (p.ResponseTemplates?.['application/json'] as string | undefined) ?? '';
      return [p.ResponseType, { status: Number(p.StatusCode), body, headers: { 'content-type': 'application/json', ...headers } }];
    }),
  );
  return { routes, gatewayResponses };
}
