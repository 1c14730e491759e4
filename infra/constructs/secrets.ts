/**
 * The service's own secrets, and handles on the secrets the configuration names.
 */
import { SecretValue, Stack, Token } from 'aws-cdk-lib';
import { Grant, type IGrantable } from 'aws-cdk-lib/aws-iam';
import { type ISecret, Secret } from 'aws-cdk-lib/aws-secretsmanager';
import { Construct } from 'constructs';
import { type Config, ConfigError } from '#shared/config';
import { secretsOf } from '#shared/trainers/backends';
import type { TrainerSecrets } from '../functions.ts';

export interface SecretsProps {
  readonly config: Config;
}

/** A generated `{"key": "<32 alphanumerics>"}` secret. */
function generatedKey(scope: Construct, id: string, description: string): Secret {
  return new Secret(scope, id, {
    description,
    generateSecretString: {
      secretStringTemplate: '{}',
      generateStringKey: 'key',
      passwordLength: 32,
      excludePunctuation: true,
    },
  });
}

/** A secret named by the configuration: a name, a partial ARN or a complete ARN (6-character suffix). */
function importSecret(scope: Construct, id: string, nameOrArn: string): ISecret {
  if (!nameOrArn.startsWith('arn:')) return Secret.fromSecretNameV2(scope, id, nameOrArn);
  return /-[A-Za-z0-9]{6}$/.test(nameOrArn)
    ? Secret.fromSecretCompleteArn(scope, id, nameOrArn)
    : Secret.fromSecretPartialArn(scope, id, nameOrArn);
}

/**
 * Makes the secret's `grantRead` also grant `kms:Decrypt` on its customer-managed key, only
 * through Secrets Manager (`kms:ViaService`), as a reader of such a secret needs
 * (https://docs.aws.amazon.com/secretsmanager/latest/userguide/security-encryption.html).
 * CDK's own `encryptionKey` path puts that grant in the key's policy, which an imported key
 * cannot change: it would grant nothing.
 */
function withKmsKey(secret: ISecret, keyArn: string, region: string): ISecret {
  const grantRead = secret.grantRead.bind(secret);
  const viaService = `secretsmanager.${region}.amazonaws.com`;
  return Object.assign(secret, {
    grantRead: (grantee: IGrantable, versionStages?: string[]) => {
      Grant.addToPrincipal({ grantee, actions: ['kms:Decrypt'], resourceArns: [keyArn], conditions: { StringEquals: { 'kms:ViaService': viaService } } });
      return grantRead(grantee, versionStages);
    },
  });
}

/** A secret the configuration names, with its key from `secret_kms_keys` when it has one. */
export function configuredSecret(scope: Construct, id: string, config: Config, nameOrArn: string): ISecret {
  const key = config.secret_kms_keys[nameOrArn];
  const region = Stack.of(scope).region;
  // A secret named without an ARN is in the stack's region, and its key must be too.
  if (key && !nameOrArn.startsWith('arn:') && !Token.isUnresolved(region) && key.split(':')[3] !== region) {
    throw new ConfigError(`dreambooth.secret_kms_keys.${nameOrArn}: the key is in ${key.split(':')[3]}, the secret in this stack's region ${region}: a secret's KMS key is in the secret's region`);
  }
  const secret = importSecret(scope, id, nameOrArn);
  // The Secrets Manager endpoint that decrypts: the secret's region (a name is in the stack's).
  return key ? withKmsKey(secret, key, nameOrArn.startsWith('arn:') ? nameOrArn.split(':')[3]! : region) : secret;
}

export class Secrets extends Construct {
  /** `{"tokens": [{"sha256": "<hex>", "owners": ["*"]}]}`; operators add tokens after deploy. */
  readonly apiTokens: Secret;
  /**
   * The master webhook signing key: each owner's `whsec_` secret derives from it (lambdas/shared/
   * webhook-signing.ts) and the API answers only those, never the master. Rotating it rotates
   * every owner's secret.
   */
  readonly webhookSigning: Secret;
  /** Key from which the per-training callback secrets derive. */
  readonly callbackKey: Secret;
  /** Secrets the configured trainers name, by who reads them (see TrainerSecrets in infra/functions.ts). */
  readonly trainerSecrets: Record<TrainerSecrets, ISecret[]>;

  constructor(scope: Construct, id: string, props: SecretsProps) {
    super(scope, id);
    this.apiTokens = new Secret(this, 'ApiTokens', {
      description: 'dreambooth-api: SHA-256 digests of the API tokens and the owners each may act for.',
      // Not a secret: an empty list that operators fill in after deploying.
      secretStringValue: SecretValue.unsafePlainText(JSON.stringify({ tokens: [] })),
    });
    this.webhookSigning = generatedKey(this, 'WebhookSigning', "dreambooth-api: master webhook signing key (each owner's signing secret derives from it).");
    this.callbackKey = generatedKey(this, 'CallbackKey', 'dreambooth-api: key of the trainer callback secrets.');

    this.trainerSecrets = { backends: [], downloads: [], uploads: [] };
    for (const [name, trainer] of Object.entries(props.config.trainers)) {
      // Each secret the trainer's backend reads, granted to the readers it names.
      for (const { field, secret, readers } of secretsOf(trainer)) {
        if (readers.length === 0) continue;
        const handle = configuredSecret(this, `Trainer-${name}-${field}`, props.config, secret);
        for (const reader of readers) this.trainerSecrets[reader].push(handle);
      }
    }
  }
}
