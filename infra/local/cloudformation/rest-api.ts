/**
 * The REST API as the synthesized template declares it — its methods' resource paths, which
 * methods the token authorizer guards, the function each integrates, API Gateway's own
 * responses — so that local mode (../apigateway.ts) serves exactly what API Gateway would.
 */
import type { HandlerName } from '../../constructs/function.ts';
import type { CfnTemplate, Synthesized } from './synthesize.ts';

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
