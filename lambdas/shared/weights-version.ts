/**
 * Weights versions (a template that loads its weights from an input): the weights object's key
 * in the data bucket and the version's id, both derived from content.
 */
import { createHash } from 'node:crypto';

/** Where the weights of weights versions live, content-addressed; no lifecycle rule expires them. */
export const WEIGHTS_PREFIX = 'weights/';

/** The key of the weights whose hex sha256 is `sha256`: the same bytes are stored once. */
export const weightsKey = (sha256: string): string => `${WEIGHTS_PREFIX}${sha256}`;

/**
 * A weights version's id: hex sha256 of `model`, the template's digest and the weights' sha256,
 * one per line. 64 hex like an image version's (a manifest digest), the same for the same
 * content (a retried step records the same version), and different for another model or template.
 */
export function weightsVersionId(model: string, templateDigest: string, weightsSha256: string): string {
  return createHash('sha256').update(`${model}\n${templateDigest}\n${weightsSha256}`).digest('hex');
}
