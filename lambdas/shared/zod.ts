/**
 * zod for the Lambdas: the functional `zod/mini` build, which tree-shakes to what a handler uses
 * (the full `zod` import costs a cold start about 80 ms). The English messages are installed so
 * every error reads exactly as it does with the full build.
 */
import { config } from 'zod/mini';
import en from 'zod/v4/locales/en.js';

config(en());

// Used as `import * as z from '#shared/zod'`, so that a bundle keeps only what it calls.
export * from 'zod/mini';
