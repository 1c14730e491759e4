/**
 * zod for the Lambdas: the functional `zod/mini` build, which tree-shakes to what a handler uses
 * (the full `zod` import costs a cold start about 80 ms). The English messages are installed so
 * every error reads exactly as it does with the full build.
 */
import * as z from 'zod/mini';
import en from 'zod/v4/locales/en.js';

z.config(en());

export { z };
