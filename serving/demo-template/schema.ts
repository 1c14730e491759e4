/**
 * The demo template's inputs as a Cog server describes them (`GET /openapi.json`,
 * `components.schemas.Input`), and a request's input checked against that document the way Cog
 * refuses one: 422 with pydantic-style `detail` entries naming the field. The document
 * (lambdas/shared/serving/demo-template-schema.ts) is the one statement of the rules;
 * @cfworker/json-schema applies it (as the API does at submit).
 */
import { Validator } from '@cfworker/json-schema';
import { DEFAULT_SIZE, DEFAULT_STEPS, demoTemplateOpenApi, WEIGHTS_INPUT } from '#shared/serving/demo-template-schema';

export { DEFAULT_SIZE, DEMO_TEMPLATE_OPENAPI, demoTemplateOpenApi, MAX_OUTPUTS, STEP_MS, WEIGHTS_INPUT } from '#shared/serving/demo-template-schema';

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
  num_inference_steps: number;
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
  return { input: { num_outputs: 1, width: DEFAULT_SIZE, height: DEFAULT_SIZE, num_inference_steps: DEFAULT_STEPS, ...given } as DemoInput };
}
