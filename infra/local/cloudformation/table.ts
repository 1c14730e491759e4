/**
 * The trainings table as the synthesized template defines it (keys, attribute types,
 * indexes), so that local mode's dynalite table cannot drift from the stack's.
 */
import { App, Stack } from 'aws-cdk-lib';
import type { CreateTableCommandInput } from '@aws-sdk/client-dynamodb';
import type { Config } from '#shared/config';
import { Storage } from '../../constructs/storage.ts';
import type { CfnTemplate } from './synthesize.ts';

export type TableDefinition = Pick<CreateTableCommandInput, 'AttributeDefinitions' | 'KeySchema' | 'GlobalSecondaryIndexes'>;

/** The template's one DynamoDB table (its properties are the CreateTable API's, PascalCase). */
export function tableOf(template: CfnTemplate): TableDefinition {
  const tables = Object.values(template.Resources).filter((r) => r.Type === 'AWS::DynamoDB::Table');
  if (tables.length !== 1) throw new Error(`the template has ${tables.length} DynamoDB tables; local mode expects one`);
  const { AttributeDefinitions, KeySchema, GlobalSecondaryIndexes } = tables[0]!.Properties!;
  return { AttributeDefinitions, KeySchema, GlobalSecondaryIndexes };
}

/** The definition from the storage construct alone, without synthesizing the whole stack (for tests of the local services). */
export function trainingsTable(config: Config): TableDefinition {
  const app = new App();
  const stack = new Stack(app, 'Table');
  new Storage(stack, 'Storage', { config });
  return tableOf(app.synth().getStackByName('Table').template as CfnTemplate);
}
