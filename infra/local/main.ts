/**
 * `npm start`: the whole service on 127.0.0.1 with no AWS account.
 *   PORT (8787), DREAMBOOTH_API_TOKEN (else generated and printed), DREAMBOOTH_DATA_DIR (.dreambooth/)
 *   --config FILE      JSON in the `dreambooth` schema, merged over cdk.json's
 *   --secrets FILE     JSON {"<secret id>": "<value>"}: the secrets the configuration names
 *   --registry H:P     push to this registry instead of starting Debian's docker-registry
 *   --no-registry      write images to an OCI layout on disk
 *   --build docker|append   build strategy (default: docker when an engine is reachable)
 *   --demo             run one demo training end to end, print it, exit
 */
import './stepfunctions/polyfill.ts';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { ConfigError } from '#shared/config';
import { runDemo } from './demo.ts';
import { type LocalMode, startLocalMode } from './start.ts';

// Node 22 is the baseline; Node 20 still runs local mode (see ./stepfunctions/polyfill.ts). There the SDK
// would print an eight-line warning on every start: one banner line says it instead. (A
// `--disable-warning` flag cannot silence it: the SDK emits it untyped, as a plain `Warning`.)
const oldNode = Number(process.versions.node.split('.')[0]) < 22;
if (oldNode) process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      config: { type: 'string' },
      secrets: { type: 'string' },
      registry: { type: 'string' },
      'no-registry': { type: 'boolean', default: false },
      build: { type: 'string', default: 'auto' },
      demo: { type: 'boolean', default: false },
      quiet: { type: 'boolean', default: false },
    },
  });
  if (!['auto', 'docker', 'append'].includes(values.build!)) throw new ConfigError('--build must be docker, append or auto');
  const configOverride = values.config ? JSON.parse(readFileSync(values.config, 'utf8')) : undefined;
  const secrets = values.secrets ? (JSON.parse(readFileSync(values.secrets, 'utf8')) as Record<string, string>) : undefined;
  const dataDir = process.env.DREAMBOOTH_DATA_DIR || '.dreambooth';
  const local = await startLocalMode({
    port: Number(process.env.PORT ?? 8787),
    dataDir,
    token: process.env.DREAMBOOTH_API_TOKEN,
    configOverride,
    secrets,
    registry: values.registry,
    registryMode: values['no-registry'] ? 'none' : 'auto',
    build: values.build as 'auto' | 'docker' | 'append',
    quiet: values.quiet,
  });
  process.stdout.write(banner(local));

  let stopping = false;
  const shutdown = async (code: number) => {
    if (stopping) return;
    stopping = true;
    await local.stop();
    process.exit(code);
  };
  process.on('SIGINT', () => void shutdown(130));
  process.on('SIGTERM', () => void shutdown(143));

  if (values.demo) {
    const ok = await runDemo(local.url, local.token, (l) => process.stdout.write(`${l}\n`), dataDir);
    await shutdown(ok ? 0 : 1);
  }
  return -1;
}

/**
 * What local mode says once it answers, as one string written at once (under the pipe's atomic
 * size): whoever reads "listening on" has every line about the start, what it resumed included.
 */
function banner(local: LocalMode): string {
  const lines = [`dreambooth-api local mode listening on ${local.url}`];
  const say = (l: string) => lines.push(l);
  // A token the user chose is theirs already: it is not echoed.
  say(`  token:    ${local.tokenGenerated ? `${local.token}   (generated; set DREAMBOOTH_API_TOKEN to choose one)` : '(from DREAMBOOTH_API_TOKEN)'}`);
  say(`  images:   ${local.image.registry ? `registry ${local.image.registry}` : `OCI layout ${local.image.layoutDir}`} (build: ${local.buildStrategy})`);
  say(`  trainers: ${Object.keys(local.config.trainers).join(', ')}`);
  const r = local.resumed;
  if (r.trainings + r.predictions + r.failed) {
    const failed = r.failed ? `; ${r.failed} could not resume, marked failed` : '';
    say(`  resumed:  ${r.trainings + r.predictions} executions (${r.trainings} trainings, ${r.predictions} predictions)${failed}`);
  }
  if (oldNode) say(`  node:     ${process.version} works, but Node 22 is the baseline (Node 20 reached end of life in April 2026)`);
  const shown = local.tokenGenerated ? local.token : '$DREAMBOOTH_API_TOKEN';
  say(`  try:      curl -s -H "Authorization: Bearer ${shown}" ${local.url}/v1/trainings`);
  return `${lines.join('\n')}\n`;
}

main().then(
  (code) => {
    if (code >= 0) process.exit(code);
  },
  (e) => {
    process.stderr.write(`${e instanceof ConfigError ? e.message : (e as Error).stack}\n`);
    process.exit(1);
  },
);
