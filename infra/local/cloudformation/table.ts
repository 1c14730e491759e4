/**
 * The trainings table as the synthesized template defines it (keys, attribute types,
 * indexes), so that local mode's dynalite table cannot drift from the stack's.
 */
import type { CreateTableCommandInput } from '@aws-sdk/client-dynamodb';
import type { CfnTemplate } from './template.ts';

export type TableDefinition = Pick<CreateTableCommandInput, 'AttributeDefinitions' | 'KeySchema' | 'GlobalSecondaryIndexes'>;

/** The template's one DynamoDB table (its properties are the CreateTable API's, PascalCase). */
export function tableOf(template: CfnTemplate): TableDefinition {
  const tables = Object.values(template.Resources).filter((r) => r.Type === 'AWS::DynamoDB::Table');
  if (tables.length !== 1) throw new Error(`the template has ${tables.length} DynamoDB tables; local mode expects one`);
  const { AttributeDefinitions, KeySchema, GlobalSecondaryIndexes } = tables[0]!.Properties!;
  return { AttributeDefinitions, KeySchema, GlobalSecondaryIndexes };
}
