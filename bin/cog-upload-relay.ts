/**
 * Starts the Cog upload relay (relay/server.ts) next to a Cog trainer:
 *
 *   DREAMBOOTH_UPLOAD_TOKEN=… npx tsx bin/cog-upload-relay.ts --port 5001 --api https://<ApiUrl> --trainer <name>
 *   cog … --upload-url http://127.0.0.1:5001/
 */
import { parseArgs } from 'node:util';
import { startUploadRelay } from '../relay/server.ts';

const { values } = parseArgs({
  options: {
    port: { type: 'string', default: '5001' },
    host: { type: 'string', default: '127.0.0.1' },
    api: { type: 'string' },
    trainer: { type: 'string' },
  },
});
const token = process.env.DREAMBOOTH_UPLOAD_TOKEN;
if (!values.api || !values.trainer || !token) {
  process.stderr.write('usage: DREAMBOOTH_UPLOAD_TOKEN=<token> cog-upload-relay --api https://<ApiUrl> --trainer <name> [--port 5001]\n');
  process.exit(2);
}
const relay = await startUploadRelay({ api: values.api, trainer: values.trainer, token, port: Number(values.port), host: values.host });
process.stderr.write(`cog upload relay for trainer ${values.trainer}: start Cog with --upload-url ${relay.url}\n`);
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => void relay.stop().then(() => process.exit(0)));
