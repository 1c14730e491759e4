/** A weights version's schema as users see it: the weights input neither offered nor required. */
import { describe, expect, it } from 'vitest';
import { withoutInput } from '#lambdas/api/prediction-inputs';

describe('withoutInput', () => {
  it('drops the input from the properties and from required, keeping the rest', () => {
    const schema = {
      type: 'object',
      properties: { prompt: { type: 'string' }, replicate_weights: { type: 'string', format: 'uri' } },
      required: ['prompt', 'replicate_weights'],
      additionalProperties: false,
    };
    expect(withoutInput(schema, 'replicate_weights')).toEqual({ type: 'object', properties: { prompt: { type: 'string' } }, required: ['prompt'], additionalProperties: false });
    // The schema it was given is left as it was (it is cached per version).
    expect(Object.keys(schema.properties)).toEqual(['prompt', 'replicate_weights']);
    expect(schema.required).toEqual(['prompt', 'replicate_weights']);
  });

  it('adds no required list where the schema had none, and leaves a schema without the input unchanged', () => {
    expect(withoutInput({ type: 'object', properties: { lora_weights: {} } }, 'lora_weights')).toEqual({ type: 'object', properties: {} });
    const plain = { type: 'object', properties: { prompt: { type: 'string' } }, required: ['prompt'] };
    expect(withoutInput(plain, 'replicate_weights')).toEqual(plain);
  });
});
