import type { APIGatewayAuthorizerResult, APIGatewayTokenAuthorizerEvent } from 'aws-lambda';
import { secretsManager } from '#shared/aws';
import { ENV, requireEnv } from '#shared/env';
import { getSecretString } from '#shared/secrets';
import { authorize, TokensSecret } from './core.ts';

export const handler = async (event: APIGatewayTokenAuthorizerEvent): Promise<APIGatewayAuthorizerResult> => {
  const secret = TokensSecret.parse(JSON.parse(await getSecretString(secretsManager(), requireEnv(ENV.apiTokensSecret))));
  const owners = authorize(secret, event.authorizationToken);
  // API Gateway answers 401 for this exact message.
  if (!owners) throw new Error('Unauthorized');
  // The policy covers the whole API so the authorizer's cached result serves every route.
  const [arn] = event.methodArn.split('/');
  return {
    principalId: 'api-token',
    policyDocument: {
      Version: '2012-10-17',
      Statement: [{ Action: 'execute-api:Invoke', Effect: 'Allow', Resource: `${arn}/*/*` }],
    },
    context: { owners: JSON.stringify(owners) },
  };
};
