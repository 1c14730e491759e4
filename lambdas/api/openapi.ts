/**
 * The OpenAPI document, generated at synth (infra/openapi.ts) and baked into the bundle like the
 * configuration; its servers entry is this deployment's URL, known only at run time.
 */
export function openApiDocument(publicUrl: string): unknown {
  const raw = process.env.DREAMBOOTH_OPENAPI;
  if (!raw) throw new Error('DREAMBOOTH_OPENAPI is not set: the OpenAPI document is baked in at synth');
  return { ...(JSON.parse(raw) as object), servers: [{ url: publicUrl }] };
}
