/**
 * The service's own secrets, and handles on the secrets the configuration names.
 */
import { SecretValue } from 'aws-cdk-lib';
import { type ISecret, Secret } from 'aws-cdk-lib/aws-secretsmanager';
import { Construct } from 'constructs';
import type { Config } from '#shared/config';
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
export function importSecret(scope: Construct, id: string, nameOrArn: string): ISecret {
  if (!nameOrArn.startsWith('arn:')) return Secret.fromSecretNameV2(scope, id, nameOrArn);
  return /-[A-Za-z0-9]{6}$/.test(nameOrArn)
    ? Secret.fromSecretCompleteArn(scope, id, nameOrArn)
    : Secret.fromSecretPartialArn(scope, id, nameOrArn);
}

export class Secrets extends Construct {
  /** `{"tokens": [{"sha256": "<hex>", "owners": ["*"]}]}`; operators add tokens after deploy. */
  readonly apiTokens: Secret;
  /** Webhook signing key; the API serves it as `whsec_` + key. */
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
    this.webhookSigning = generatedKey(this, 'WebhookSigning', 'dreambooth-api: webhook signing key.');
    this.callbackKey = generatedKey(this, 'CallbackKey', 'dreambooth-api: key of the trainer callback secrets.');

    this.trainerSecrets = { backends: [], downloads: [], uploads: [] };
    for (const [name, trainer] of Object.entries(props.config.trainers)) {
      if (trainer.backend === 'cog' && trainer.webhook_auth_token_secret) {
        this.trainerSecrets.backends.push(importSecret(this, `Trainer-${name}`, trainer.webhook_auth_token_secret));
      }
      if (trainer.backend === 'cog' && trainer.upload_token_secret) {
        this.trainerSecrets.uploads.push(importSecret(this, `UploadToken-${name}`, trainer.upload_token_secret));
      }
      if (trainer.backend === 'replicate') {
        const token = importSecret(this, `Trainer-${name}`, trainer.api_token_secret);
        this.trainerSecrets.backends.push(token);
        this.trainerSecrets.downloads.push(token);
      }
    }
  }
}
