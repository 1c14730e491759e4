/**
 * The demo template's inputs and outputs as a Cog server describes them (`GET /openapi.json`):
 * one document for the template served in-process (serving/demo-template), for the catalog's
 * image that stands for it (its `run.cog.openapi_schema` label: lambdas/shared/oci/template.ts),
 * and so for the API, which checks a prediction's input against a version's schema.
 */

export const MAX_OUTPUTS = 4;
export const DEFAULT_SIZE = 128;
export const DEFAULT_STEPS = 1;
/** What one denoising step of the demo template takes: a prediction lasts about steps × this. */
export const STEP_MS = 10;
const MIN_SIZE = 16;
const MAX_SIZE = 512;

const size = (title: string, order: number) => ({
  type: 'integer',
  title,
  minimum: MIN_SIZE,
  maximum: MAX_SIZE,
  default: DEFAULT_SIZE,
  description: `${title} of the picture in pixels`,
  'x-order': order,
});

const INPUT = {
  title: 'Input',
  type: 'object',
  required: ['prompt'],
  properties: {
    prompt: { type: 'string', title: 'Prompt', description: 'What to picture, e.g. "a photo of cjw person on the moon"', 'x-order': 0 },
    seed: { type: 'integer', title: 'Seed', description: 'Leave it out for a picture determined by the prompt and the weights alone', 'x-order': 1 },
    num_outputs: { type: 'integer', title: 'Num Outputs', minimum: 1, maximum: MAX_OUTPUTS, default: 1, description: 'How many pictures', 'x-order': 2 },
    width: size('Width', 3),
    height: size('Height', 4),
    num_inference_steps: {
      type: 'integer',
      title: 'Num Inference Steps',
      minimum: 1,
      maximum: 500,
      default: DEFAULT_STEPS,
      description: `Denoising steps; each takes ${STEP_MS} ms, as a GPU's would take its time`,
      'x-order': 5,
    },
  },
};

/** Offered only by a server that can fetch per-request weights (issue 26's `replicate_weights`). */
export const WEIGHTS_INPUT = 'replicate_weights';
const WEIGHTS_PROPERTY = {
  type: 'string',
  format: 'uri',
  title: 'Replicate Weights',
  description: "Weights to use instead of the version's own (a URL)",
  'x-order': 6,
};

/** The demo template's OpenAPI document; `perRequestWeights` adds the `replicate_weights` input. */
export function demoTemplateOpenApi(perRequestWeights = false) {
  const properties = perRequestWeights ? { ...INPUT.properties, [WEIGHTS_INPUT]: WEIGHTS_PROPERTY } : INPUT.properties;
  return {
    openapi: '3.0.2',
    info: { title: 'Cog', version: '0.1.0' },
    paths: {},
    components: {
      schemas: {
        Input: { ...INPUT, properties },
        Output: { title: 'Output', type: 'array', items: { type: 'string', format: 'uri' } },
      },
    },
  };
}

export const DEMO_TEMPLATE_OPENAPI = demoTemplateOpenApi();
