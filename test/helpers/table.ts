/** The trainings table's definition from the storage construct, as local mode reads it. */
import { App, Stack } from 'aws-cdk-lib';
import { Storage } from '#infra/constructs/storage';
import { tableOf, type TableDefinition } from '#infra/local/cloudformation/table';
import type { CfnTemplate } from '#infra/local/cloudformation/template';
import { parseConfig, type Config } from '#shared/config';
import { readCdkJson } from './paths.ts';

let cached: TableDefinition | undefined;
export function testTable(): TableDefinition {
  const cdk = readCdkJson() as { context: { dreambooth: unknown } };
  return (cached ??= trainingsTable(parseConfig(cdk.context.dreambooth)));
}

/** The definition from the storage construct alone, without synthesizing the whole stack. */
function trainingsTable(config: Config): TableDefinition {
  const app = new App();
  const stack = new Stack(app, 'Table');
  new Storage(stack, 'Storage', { config });
  return tableOf(app.synth().getStackByName('Table').template as CfnTemplate);
}
