#!/usr/bin/env node
// The `dreambooth` command (package.json "bin"): plain JavaScript, so that npx and a global
// install run it with plain node; it registers tsx (a dependency) and runs the TypeScript CLI.
import { register } from 'tsx/esm/api';

register();
await import('../cli/main.ts');
