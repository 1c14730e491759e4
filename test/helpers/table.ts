/** The trainings table's definition from the storage construct, as local mode reads it. */
import { parseConfig } from '#shared/config';
import { trainingsTable, type TableDefinition } from '#infra/local/cloudformation/table';
import { readCdkJson } from './paths.ts';

let cached: TableDefinition | undefined;
export function testTable(): TableDefinition {
  const cdk = readCdkJson() as { context: { dreambooth: unknown } };
  return (cached ??= trainingsTable(parseConfig(cdk.context.dreambooth)));
}
