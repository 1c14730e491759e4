/**
 * Every route of the public API, declared once. CDK builds the API Gateway resources and methods
 * from this table (infra/constructs/api.ts); each handler dispatches on API Gateway's
 * `event.resource`, which is a `path` of this table; local mode serves the methods CDK
 * synthesized from it (infra/local/apigateway.ts); the OpenAPI document lists it (infra/openapi.ts).
 */

/**
 * Who may call a route:
 * - `token`: the token authorizer (an API token) guards it;
 * - `self`: trainer-facing, no API token (a trainer holds none): the function verifies the
 *   per-training callback secret or the trainer's upload token itself;
 * - `public`: anyone; it serves no data (the OpenAPI document).
 */
export type RouteAuth = 'token' | 'self' | 'public';

/** The functions behind routes (folders under `lambdas/`). */
export type RouteFunction = 'api' | 'upload' | 'trainer-callback' | 'trainer-uploads';

export interface Route {
  readonly method: 'GET' | 'POST';
  /** The API Gateway resource path, `{name}` for a path parameter; what `event.resource` holds. */
  readonly path: string;
  readonly auth: RouteAuth;
  readonly fn: RouteFunction;
  /** What the function does for it: the operation the handler dispatches to (and the OpenAPI operationId). */
  readonly op: string;
  /** One line for the OpenAPI document. */
  readonly summary: string;
}

export const ROUTES = [
  { method: 'POST', path: '/v1/trainings', auth: 'token', fn: 'api', op: 'createSeedTraining', summary: 'Train, build and push a model version (the seed API)' },
  { method: 'GET', path: '/v1/trainings', auth: 'token', fn: 'api', op: 'listTrainings', summary: 'List trainings, newest first' },
  { method: 'GET', path: '/v1/trainings/{id}', auth: 'token', fn: 'api', op: 'getTraining', summary: 'Get a training' },
  { method: 'POST', path: '/v1/trainings/{id}/cancel', auth: 'token', fn: 'api', op: 'cancelTraining', summary: 'Cancel a training' },
  { method: 'GET', path: '/v1/models/{owner}/{name}', auth: 'token', fn: 'api', op: 'getModel', summary: 'Get a model and its latest version' },
  { method: 'GET', path: '/v1/models/{owner}/{name}/versions', auth: 'token', fn: 'api', op: 'listVersions', summary: "List a model's versions, newest first" },
  { method: 'POST', path: '/v1/models/{owner}/{name}/versions', auth: 'token', fn: 'api', op: 'retemplate', summary: "Build a new version from a training's weights on another template" },
  { method: 'GET', path: '/v1/models/{owner}/{name}/versions/{version}', auth: 'token', fn: 'api', op: 'getVersion', summary: 'Get a model version' },
  // Replicate's Trainings API creates trainings under the trainer's version.
  { method: 'POST', path: '/v1/models/{owner}/{name}/versions/{version}/trainings', auth: 'token', fn: 'api', op: 'createTrainingsTraining', summary: "Create a training (Replicate's Trainings API)" },
  // Replicate's predictions API: a version run on its own endpoint (lambdas/api/predictions.ts).
  { method: 'POST', path: '/v1/predictions', auth: 'token', fn: 'api', op: 'createPrediction', summary: 'Run a model version (Replicate\'s predictions API)' },
  { method: 'GET', path: '/v1/predictions', auth: 'token', fn: 'api', op: 'listPredictions', summary: 'List predictions, newest first' },
  { method: 'GET', path: '/v1/predictions/{id}', auth: 'token', fn: 'api', op: 'getPrediction', summary: 'Get a prediction (file outputs as short-lived URLs)' },
  { method: 'POST', path: '/v1/predictions/{id}/cancel', auth: 'token', fn: 'api', op: 'cancelPrediction', summary: 'Cancel a prediction' },
  { method: 'POST', path: '/v1/models/{owner}/{name}/predictions', auth: 'token', fn: 'api', op: 'createModelPrediction', summary: "Run a model's latest version" },
  { method: 'GET', path: '/v1/webhooks/default/secret', auth: 'token', fn: 'api', op: 'getWebhookSecret', summary: "Get the webhook signing secret of the token's owner" },
  { method: 'GET', path: '/v1/trainers', auth: 'token', fn: 'api', op: 'listTrainers', summary: 'List the configured trainers' },
  { method: 'GET', path: '/v1/trainers/{owner}/{name}', auth: 'token', fn: 'api', op: 'getTrainer', summary: 'Get a trainer with its input schema' },
  { method: 'GET', path: '/v1/templates', auth: 'token', fn: 'api', op: 'listTemplates', summary: 'List the template catalog' },
  { method: 'GET', path: '/v1/openapi.json', auth: 'public', fn: 'api', op: 'getOpenApi', summary: 'This document' },
  // The token routes with S3 rights share their own function: the seed's upload helper, a
  // training's output.weights and its whole log (redirects to presigned GETs).
  { method: 'POST', path: '/v1/upload/{filename}', auth: 'token', fn: 'upload', op: 'createUpload', summary: 'Get presigned upload and serving URLs for instance data' },
  { method: 'GET', path: '/v1/trainings/{id}/weights', auth: 'token', fn: 'upload', op: 'getWeights', summary: "Download a succeeded training's weights (a short-lived presigned redirect)" },
  { method: 'GET', path: '/v1/trainings/{id}/logs', auth: 'token', fn: 'upload', op: 'getLogs', summary: "A training's whole log as text (`logs` is its tail); a short-lived presigned redirect once it is long" },
  { method: 'POST', path: '/v1/callbacks/{id}', auth: 'self', fn: 'trainer-callback', op: 'trainerCallback', summary: "A trainer's webhook (verified by the training's callback secret)" },
  // The Cog upload relay (relay/), checked against the trainer's upload token.
  { method: 'POST', path: '/v1/trainer-uploads/{trainer}', auth: 'self', fn: 'trainer-uploads', op: 'create', summary: 'Start a relayed multipart upload of a trainer output' },
  { method: 'POST', path: '/v1/trainer-uploads/{trainer}/{upload_id}/parts/{n}', auth: 'self', fn: 'trainer-uploads', op: 'part', summary: 'Presign one part of a relayed upload' },
  { method: 'POST', path: '/v1/trainer-uploads/{trainer}/{upload_id}/complete', auth: 'self', fn: 'trainer-uploads', op: 'complete', summary: 'Complete a relayed upload' },
  { method: 'POST', path: '/v1/trainer-uploads/{trainer}/{upload_id}/abort', auth: 'self', fn: 'trainer-uploads', op: 'abort', summary: 'Abort a relayed upload' },
] as const satisfies readonly Route[];

export type RouteOf<F extends RouteFunction> = Extract<(typeof ROUTES)[number], { fn: F }>;
/** The operations of one function, e.g. `Operation<'api'>`. */
export type Operation<F extends RouteFunction> = RouteOf<F>['op'];

/** The operation of a function's route for API Gateway's `httpMethod` and `resource`, if any. */
export function operationFor<F extends RouteFunction>(fn: F, method: string, resource: string): Operation<F> | undefined {
  const route = ROUTES.find((r) => r.fn === fn && r.method === method && r.path === resource);
  return route?.op as Operation<F> | undefined;
}

/** A route's path parameters, in order: `/v1/models/{owner}/{name}` → `['owner', 'name']`. */
export function pathParameterNames(path: string): string[] {
  return [...path.matchAll(/\{([^}]+)\}/g)].map((m) => m[1]!);
}

/**
 * Matches a request path against resource paths as API Gateway does: segment by segment, a
 * `{name}` segment taking any one non-empty segment; an exact segment wins over a parameter (so
 * `/v1/webhooks/default/secret` never reaches a `{param}` sibling). Parameters are decoded; a
 * malformed escape stays as sent (the function's own check refuses it).
 */
export function matchPath(paths: readonly string[], path: string): { path: string; pathParameters: Record<string, string> } | null {
  const parts = path.split('/').slice(1);
  let best: { path: string; pathParameters: Record<string, string>; exact: number } | null = null;
  for (const candidate of paths) {
    const pattern = candidate.split('/').slice(1);
    if (pattern.length !== parts.length) continue;
    const params: Record<string, string> = {};
    let exact = 0;
    const ok = pattern.every((p, i) => {
      const part = parts[i]!;
      if (p.startsWith('{') && p.endsWith('}')) {
        if (part === '') return false;
        params[p.slice(1, -1)] = decode(part);
        return true;
      }
      exact++;
      return p === part;
    });
    if (ok && (!best || exact > best.exact)) best = { path: candidate, pathParameters: params, exact };
  }
  return best && { path: best.path, pathParameters: best.pathParameters };
}

function decode(part: string): string {
  try {
    return decodeURIComponent(part);
  } catch {
    return part;
  }
}

/** The concrete path of a resource path and its parameters (re-encoded). */
export function fillPath(path: string, params: Record<string, string | undefined>): string {
  return path.replace(/\{([^}]+)\}/g, (_, name: string) => encodeURIComponent(params[name] ?? ''));
}
