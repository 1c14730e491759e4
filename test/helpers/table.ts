/** The trainings table's definition from the storage construct, as local mode reads it. */
import { readFileSync } from 'node:fs';
import { parseConfig } from '#shared/config';
import { trainingsTable, type TableDefinition } from '#infra/local/cloudformation/table';

let cached: TableDefinition | undefined;
export function testTable(): TableDefinition {
  const cdk = JSON.parse(readFileSync(new URL('../../cdk.json', import.meta.url), 'utf8')) as { context: { dreambooth: unknown } };
  return (cached ??= trainingsTable(parseConfig(cdk.context.dreambooth)));
}
