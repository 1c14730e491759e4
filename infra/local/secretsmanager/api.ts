/**
 * Secrets Manager's operations (versions and staging labels) over the local SecretStore, served
 * by the local endpoint (../endpoint.ts) so handlers and tools call them through the unmodified
 * SDK client.
 */
import { z } from 'zod';
import { LOCAL_ACCOUNT } from '../names.ts';
import { findVersion, moveStage, notFound, putVersion, type SecretStore } from './store.ts';

const SecretRef = { SecretId: z.string().min(1) };
const GetSecretValue = z.object({ ...SecretRef, VersionId: z.string().optional(), VersionStage: z.string().optional() });
const PutSecretValue = z.object({
  ...SecretRef,
  SecretString: z.string(),
  ClientRequestToken: z.string().min(32).max(64).optional(),
  VersionStages: z.array(z.string().min(1)).min(1).optional(),
});
const UpdateSecretVersionStage = z.object({
  ...SecretRef,
  VersionStage: z.string().min(1),
  MoveToVersionId: z.string().optional(),
  RemoveFromVersionId: z.string().optional(),
});

/** GetSecretValue, PutSecretValue, UpdateSecretVersionStage and DescribeSecret over a SecretStore. */
export function secretsManagerApi(store: SecretStore, region: string) {
  const arn = (name: string) => `arn:aws:secretsmanager:${region}:${LOCAL_ACCOUNT}:secret:${name}`;
  const named = (id: string) => {
    const name = secretName(id);
    return { name, ARN: arn(name), Name: name };
  };
  return {
    GetSecretValue: (body: unknown) => {
      const { SecretId, VersionId, VersionStage } = GetSecretValue.parse(body);
      const { name, ...ids } = named(SecretId);
      const state = store.read(name);
      if (!state) throw notFound();
      const [id, version] = findVersion(state, VersionId, VersionStage);
      return { ...ids, SecretString: version.value, VersionId: id, VersionStages: version.stages, CreatedDate: version.created / 1000 };
    },
    PutSecretValue: (body: unknown) => {
      const { SecretId, SecretString, ClientRequestToken, VersionStages } = PutSecretValue.parse(body);
      const { name, ...ids } = named(SecretId);
      const out = store.update(name, (state) => putVersion(state, SecretString, ClientRequestToken, VersionStages));
      return { ...ids, VersionId: out.id, VersionStages: out.stages };
    },
    UpdateSecretVersionStage: (body: unknown) => {
      const { SecretId, VersionStage, MoveToVersionId, RemoveFromVersionId } = UpdateSecretVersionStage.parse(body);
      const { name, ...ids } = named(SecretId);
      store.update(name, (state) => moveStage(state, VersionStage, MoveToVersionId, RemoveFromVersionId));
      return ids;
    },
    DescribeSecret: (body: unknown) => {
      const { name, ...ids } = named(z.object(SecretRef).parse(body).SecretId);
      const state = store.read(name);
      if (!state) throw notFound();
      const VersionIdsToStages = Object.fromEntries(Object.entries(state).filter(([, v]) => v.stages.length).map(([id, v]) => [id, v.stages]));
      return { ...ids, VersionIdsToStages };
    },
  };
}

/** A secret ARN names the secret after `:secret:` (AWS appends a 6-character suffix, we do not). */
const secretName = (id: string) => (id.startsWith('arn:') ? id.slice(id.indexOf(':secret:') + 8) : id);
