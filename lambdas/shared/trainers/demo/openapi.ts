/**
 * The demo trainer's inputs as a Cog server describes them (`GET /openapi.json`,
 * `components.schemas.Input`): the inputs of replicate/dreambooth, which the demo stands in for.
 * The demo server serves this document; the API checks demo trainings against it directly.
 */
const uri = (description: string) => ({ type: 'string', format: 'uri', description });

export const DEMO_OPENAPI = {
  openapi: '3.0.2',
  info: { title: 'Cog', version: '0.1.0' },
  paths: {},
  components: {
    schemas: {
      Input: {
        title: 'Input',
        type: 'object',
        required: ['instance_prompt', 'class_prompt', 'instance_data'],
        properties: {
          instance_prompt: { type: 'string', description: 'The prompt with identifier specifying the instance, e.g. "a photo of a cjw person"', 'x-order': 0 },
          class_prompt: { type: 'string', description: 'The prompt to specify images in the same class as the instance images, e.g. "a photo of a person"', 'x-order': 1 },
          instance_data: { ...uri('A zip of the instance images'), 'x-order': 2 },
          class_data: { ...uri('An optional zip of class images'), 'x-order': 3 },
          num_class_images: { type: 'integer', minimum: 0, default: 50, 'x-order': 4 },
          save_sample_prompt: { type: 'string', 'x-order': 5 },
          max_train_steps: { type: 'integer', minimum: 1, maximum: 100_000, default: 2000, 'x-order': 6 },
          learning_rate: { type: 'number', minimum: 0, default: 1e-6, 'x-order': 7 },
          resolution: { type: 'integer', enum: [256, 384, 512, 768, 1024], default: 512, 'x-order': 8 },
          train_text_encoder: { type: 'boolean', default: true, 'x-order': 9 },
          with_prior_preservation: { type: 'boolean', default: true, 'x-order': 10 },
          seed: { type: 'integer', default: 1337, 'x-order': 11 },
          output_format: {
            type: 'string',
            enum: ['diffusers', 'lora'],
            default: 'diffusers',
            description: 'diffusers: an output.zip of a diffusers pipeline (for templates that load /src/weights); lora: a single lora.safetensors (for templates that take their weights through an input, e.g. demo-lora)',
            'x-order': 12,
          },
        },
      },
    },
  },
} as const;
