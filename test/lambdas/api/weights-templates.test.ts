/**
 * Templates that take their weights through an input: the configuration's two forms, the image
 * label outside the catalog, the refusal at submit of an input the template's schema lacks, and
 * a weights version's id.
 */
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { mergeConfig, parseConfig, type Config } from '#shared/config';
import { demoTemplateOpenApi } from '#shared/serving/demo-template-schema';
import { weightsKey, weightsVersionId } from '#shared/weights-version';
import { checkWeightsInput, resolveTemplate, type TemplateRegistry } from '#lambdas/api/templates';
import { documentWithoutInput } from '#lambdas/api/reads';
import { readCdkJson } from '#test-helpers/paths';

const D1 = '1'.repeat(64);
const D2 = '2'.repeat(64);
const shipped = readCdkJson().context.dreambooth;
const withCatalog = (catalog: Record<string, unknown>): Config =>
  parseConfig(mergeConfig(shipped, { templates: { default: 'lora', catalog: { lora: { repository: 'r8.im/acme/lora', digests: [D1] }, ...catalog } } }));

/** A registry whose images all have the demo template's schema (with replicate_weights) and `labels`. */
const registry = (labels: Record<string, string> = {}, reads = { count: 0 }): TemplateRegistry => ({
  exists: async () => true,
  inspect: async () => ({ problem: null, weights: labels['ai.dreambooth.weights'] as 'any' | undefined, weights_input: labels['ai.dreambooth.weights-input'] }),
  openApi: async () => {
    reads.count++;
    return demoTemplateOpenApi(true);
  },
});

describe('the weights setting of a template', () => {
  it('accepts the string forms and {format, input}', () => {
    const c = withCatalog({
      plain: { repository: 'r8.im/acme/plain', digests: [D1], weights: 'any' },
      lora2: { repository: 'r8.im/acme/lora2', digests: [D2], weights: { format: 'any', input: 'replicate_weights' } },
    });
    expect(c.templates.catalog.lora!.weights).toBe('diffusers');
    expect(c.templates.catalog.plain!.weights).toBe('any');
    expect(c.templates.catalog.lora2!.weights).toEqual({ format: 'any', input: 'replicate_weights' });
  });

  it('refuses an object without an input, an unknown format or a name that is no input name', () => {
    for (const weights of [{ format: 'any' }, { format: 'lora', input: 'x' }, { format: 'any', input: 'no spaces' }, { format: 'any', input: 'x', extra: 1 }]) {
      expect(() => withCatalog({ bad: { repository: 'r8.im/acme/bad', weights } }), JSON.stringify(weights)).toThrow(/weights/);
    }
  });

  it('resolves a catalog template with its weights input, and an image outside the catalog by its label', async () => {
    const c = withCatalog({ lora2: { repository: 'r8.im/acme/lora2', digests: [D2], weights: { format: 'any', input: 'replicate_weights' } } });
    expect(await resolveTemplate(c, 'lora2', registry())).toEqual({ name: 'lora2', repository: 'r8.im/acme/lora2', digest: D2, weights: 'any', weights_input: 'replicate_weights' });
    expect((await resolveTemplate(c, 'lora', registry())).weights_input).toBeUndefined();
    const outside = await resolveTemplate(c, `r8.im/other/flux@sha256:${D2}`, registry({ 'ai.dreambooth.weights-input': 'lora_weights' }));
    expect(outside).toMatchObject({ repository: 'r8.im/other/flux', weights: 'any', weights_input: 'lora_weights' });
  });
});

describe('the weights input at submit', () => {
  const t = (weights_input?: string) => ({ name: 'lora2', repository: 'r8.im/acme/lora2', digest: D2, weights: 'any' as const, ...(weights_input ? { weights_input } : {}) });

  it('passes an input the Cog schema has, and reads nothing for a template without one', async () => {
    const reads = { count: 0 };
    await checkWeightsInput(registry({}, reads), t('replicate_weights'));
    await checkWeightsInput(registry({}, reads), t());
    expect(reads.count).toBe(1);
  });

  it('refuses an input the Cog schema lacks, naming the input and the template', async () => {
    const err = await checkWeightsInput(registry(), t('lora_weights')).catch((e) => e);
    expect(err.status).toBe(400);
    expect(err.message).toMatch(/template lora2 .*input lora_weights.*has no input lora_weights/);
  });

  it('refuses when the schema cannot be read or there is none', async () => {
    const none: TemplateRegistry = { ...registry(), openApi: async () => null };
    expect((await checkWeightsInput(none, t('replicate_weights')).catch((e) => e)).status).toBe(400);
    const failing: TemplateRegistry = { ...registry(), openApi: async () => Promise.reject(new Error('connection refused')) };
    expect((await checkWeightsInput(failing, t('replicate_weights')).catch((e) => e)).message).toMatch(/could not read the Cog schema of template lora2.*connection refused/);
  });
});

describe('a weights version', () => {
  it('has a 64-hex id derived from the model, the template digest and the weights digest', () => {
    const w = 'c'.repeat(64);
    const id = weightsVersionId('acme/dog', D1, w);
    expect(id).toBe(createHash('sha256').update(`acme/dog\n${D1}\n${w}`).digest('hex'));
    expect(id).toMatch(/^[0-9a-f]{64}$/);
    expect(weightsVersionId('acme/dog', D1, w)).toBe(id);
    expect(new Set([id, weightsVersionId('acme/cat', D1, w), weightsVersionId('acme/dog', D2, w), weightsVersionId('acme/dog', D1, 'd'.repeat(64))]).size).toBe(4);
    expect(weightsKey(w)).toBe(`weights/${w}`);
  });

  it('shows a schema without the input the service sets', () => {
    const doc = demoTemplateOpenApi(true);
    const shown = documentWithoutInput(doc, 'replicate_weights') as typeof doc;
    expect(shown.components.schemas.Input.properties).not.toHaveProperty('replicate_weights');
    expect(shown.components.schemas.Input.properties).toHaveProperty('prompt');
    expect(doc.components.schemas.Input.properties).toHaveProperty('replicate_weights');
  });
});
