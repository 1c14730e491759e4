/**
 * Bundled into every Lambda in place of `@aws-sdk/credential-provider-node` (the `alias` in
 * infra/constructs/function.ts). A Lambda function always runs with its execution role's
 * credentials in its environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN),
 * so the default chain's other sources (SSO, shared ini files, credential processes, web
 * identity, container and instance metadata) never apply there, and bundling them (with the
 * STS and SSO clients they bring) costs every cold start about 20 ms (`npm run bench -- --only
 * bundles`). The SDK's own environment provider reads them.
 * Not used by local mode (which runs the handlers' sources) or by the CodeBuild script.
 */
import { fromEnv, type FromEnvInit } from '@aws-sdk/credential-provider-env';

export const defaultProvider = (init: FromEnvInit = {}) => fromEnv(init);
