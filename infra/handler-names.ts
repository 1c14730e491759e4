/** One function per folder under `lambdas/`: its handler is `lambdas/<name>/handler.ts`. */
export const HANDLER_NAMES = [
  'api',
  'authorizer',
  'trainer-callback',
  'trainer-uploads',
  'upload',
  'trainer-queue',
  'start-trainer',
  'check-trainer',
  'stage-weights',
  'prepare-training-job',
  'record',
  'notify',
  'demo-trainer',
  'prediction-endpoint',
  'predict',
  'prediction-notified',
  'record-prediction',
] as const;
export type HandlerName = (typeof HANDLER_NAMES)[number];
