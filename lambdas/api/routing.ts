/**
 * The token-authorised API's routing: each operation of the route table (lambdas/shared/routes.ts)
 * and the function that does it. The operations live by what they do: ./create.ts (the three
 * create flows), ./reads.ts, ./trainers.ts, ./cancel.ts, ./idempotency.ts, ./webhooks.ts;
 * predictions in ./predictions.ts (create) and ./prediction-reads.ts (reads, cancel).
 */
import { ApiError } from '#shared/errors';
import { view } from '#shared/training';
import { operationFor, type Operation } from '#shared/routes';
import { cancelTraining } from './cancel.ts';
import { createSeedTraining, createTrainingsTraining, retemplate } from './create.ts';
import { cancelPrediction, getPrediction, listPredictions } from './prediction-reads.ts';
import { createModelPrediction, createPrediction } from './predictions.ts';
import { getModel, getVersion, listTemplates, listTrainings, listVersions, ownedTraining, withQueuePlace } from './reads.ts';
import { getTrainer, listTrainers } from './trainers.ts';
import type { ApiDeps, ApiRequest, ApiResponse } from './types.ts';
import { getWebhookSecret } from './webhooks.ts';

export type { ApiDeps, ApiRequest, ApiResponse } from './types.ts';

type OperationHandler = (d: ApiDeps, req: ApiRequest, p: Record<string, string>) => Promise<ApiResponse> | ApiResponse;

/** Every api operation of the route table (lambdas/shared/routes.ts); the compiler checks none is missing. */
const OPERATIONS: Record<Operation<'api'>, OperationHandler> = {
  createSeedTraining: (d, req) => createSeedTraining(d, req),
  listTrainings: (d, req) => listTrainings(d, req),
  getTraining: async (d, req, p) => ({ status: 200, body: view(await withQueuePlace(d, await ownedTraining(d, req, p.id!)), d.publicUrl) }),
  cancelTraining: (d, req, p) => cancelTraining(d, req, p.id!),
  getModel: (d, req, p) => getModel(d, req, p.owner!, p.name!),
  listVersions: (d, req, p) => listVersions(d, req, p.owner!, p.name!),
  retemplate: (d, req, p) => retemplate(d, req, p.owner!, p.name!),
  getVersion: (d, req, p) => getVersion(d, req, p.owner!, p.name!, p.version!),
  createTrainingsTraining: (d, req, p) => createTrainingsTraining(d, req, p.owner!, p.name!, p.version!),
  createPrediction: (d, req) => createPrediction(d, req),
  listPredictions: (d, req) => listPredictions(d, req),
  getPrediction: (d, req, p) => getPrediction(d, req, p.id!),
  cancelPrediction: (d, req, p) => cancelPrediction(d, req, p.id!),
  createModelPrediction: (d, req, p) => createModelPrediction(d, req, p.owner!, p.name!),
  getWebhookSecret: (d, req) => getWebhookSecret(d, req),
  listTrainers: (d) => listTrainers(d),
  getTrainer: (d, _req, p) => getTrainer(d, p.owner!, p.name!),
  listTemplates: (d) => listTemplates(d),
  getOpenApi: (d) => ({ status: 200, body: d.openApi() }),
};

/**
 * Dispatches on the resource API Gateway matched: the gateway already chose the route, so this is
 * a lookup, not a second match. Powertools' HTTP Router would match `event.path` again with its
 * own patterns (and a custom domain's base path is in `event.path`); measured here its bundle adds
 * 28 KB and about 12 ms of cold import on this loaded machine (about 4 ms unloaded) for nothing
 * the table does not already say.
 */
export async function route(d: ApiDeps, req: ApiRequest): Promise<ApiResponse> {
  const op = operationFor('api', req.method, req.resource);
  if (!op) throw new ApiError(404, `no route for ${req.method} ${req.resource}`);
  return OPERATIONS[op](d, req, req.params);
}
