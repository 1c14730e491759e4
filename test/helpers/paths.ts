/** The repository's root folder and its files, for tests that read them or run its programs. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** A file of the repository by its path from the root. */
export const repoFile = (path: string): string => join(ROOT, path);

/** cdk.json as shipped (its `context.dreambooth` is the shipped configuration). */
export const readCdkJson = (): any => JSON.parse(readFileSync(repoFile('cdk.json'), 'utf8'));
