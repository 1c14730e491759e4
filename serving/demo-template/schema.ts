/**
 * The demo template's inputs as a Cog server describes them (`GET /openapi.json`,
 * `components.schemas.Input`), and a request's input checked against that document the way Cog
 * refuses one: 422 with pydantic-style `detail` entries naming the field. The document is the one
 * statement of the rules; @cfworker/json-schema applies it (as the API does at submit).
 */
import { Validator } from '@cfworker/json-schema';

export const MAX_OUTPUTS = 4;
export const DEFAULT_SIZE = 128;
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
  },
};

/** Offered only by a server that can fetch per-request weights (issue 26's `replicate_weights`). */
export const WEIGHTS_INPUT = 'replicate_weights';
const WEIGHTS_PROPERTY = {
  type: 'string',
  format: 'uri',
  title: 'Replicate Weights',
  description: "Weights to use instead of the version's own (a URL)",
  'x-order': 5,
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

export interface Problem {
  loc: (string | number)[];
  msg: string;
  type: string;
}

export interface DemoInput {
  prompt: string;
  seed?: number;
  num_outputs: number;
  width: number;
  height: number;
  replicate_weights?: string;
}

/** The input with its defaults, or the problems Cog would answer 422 with. */
export function checkInput(input: unknown, perRequestWeights: boolean): { input: DemoInput } | { problems: Problem[] } {
  const schema = demoTemplateOpenApi(perRequestWeights).components.schemas.Input;
  // OpenAPI 3.0 schemas are JSON Schema draft 4 with extensions; all errors, not the first.
  const result = new Validator(schema as never, '4', false).validate(input);
  const problems: Problem[] = [];
  for (const e of result.errors) {
    if (e.keyword === 'properties') continue; // the nested error says what is wrong
    if (e.keyword === 'required') {
      const field = e.error.match(/property "(.+)"/)?.[1] ?? '?';
      problems.push({ loc: ['body', 'input', field], msg: 'field required', type: 'value_error.missing' });
    } else {
      const field = e.instanceLocation.replace(/^#\/?/, '').split('/').filter(Boolean).map(decodeURIComponent);
      problems.push({ loc: ['body', 'input', ...field], msg: e.error.replace(/^Instance /, 'value '), type: `value_error.${e.keyword}` });
    }
  }
  const given = input as Record<string, unknown>;
  if (!perRequestWeights && result.valid && given[WEIGHTS_INPUT] !== undefined) {
    problems.push({ loc: ['body', 'input', WEIGHTS_INPUT], msg: 'this server takes no per-request weights', type: 'value_error' });
  }
  if (problems.length) return { problems };
  return { input: { num_outputs: 1, width: DEFAULT_SIZE, height: DEFAULT_SIZE, ...given } as DemoInput };
}
