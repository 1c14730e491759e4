/**
 * Local mode's Secrets Manager state: versions with staging labels, as AWS keeps them, so a
 * writer can detect a concurrent change (UpdateSecretVersionStage with RemoveFromVersionId)
 * here exactly as on AWS. Seeded secrets live in memory until first written; written ones are
 * kept in one JSON file under the data directory, so `npm run token` (another process) and a
 * running local mode see the same secret. Each operation holds a lock file while it reads,
 * changes and renames the file into place.
 */
import { createHash, randomUUID } from 'node:crypto';
import { closeSync, existsSync, openSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { AwsError } from '../errors.ts';

export interface SecretVersion {
  value: string;
  stages: string[];
  created: number;
}
export type SecretState = Record<string, SecretVersion>;

const LOCK_STALE_MS = 10_000;
const LOCK_WAIT_MS = 5_000;

export class SecretStore {
  constructor(
    private readonly seeds: Record<string, string>,
    private readonly file?: string,
  ) {}

  /** The versions of a secret, or undefined when it does not exist. */
  read(name: string): SecretState | undefined {
    return this.load()[name] ?? this.seeded(name);
  }

  /** Runs `change` on the secret's versions under the lock and stores what it returns. */
  update<T>(name: string, change: (state: SecretState) => T): T {
    if (!this.file) throw new AwsError('InvalidRequestException', 'this local Secrets Manager is read-only');
    return withLock(`${this.file}.lock`, () => {
      const all = this.load();
      const state = all[name] ?? this.seeded(name);
      if (!state) throw notFound();
      const result = change(state);
      all[name] = state;
      const tmp = `${this.file}.${process.pid}.tmp`;
      writeFileSync(tmp, JSON.stringify(all, null, 2), { mode: 0o600 });
      renameSync(tmp, this.file!);
      return result;
    });
  }

  private load(): Record<string, SecretState> {
    if (!this.file || !existsSync(this.file)) return {};
    return JSON.parse(readFileSync(this.file, 'utf8')) as Record<string, SecretState>;
  }

  /** A seed's version id derives from its value, so it is stable across restarts. */
  private seeded(name: string): SecretState | undefined {
    if (!Object.hasOwn(this.seeds, name)) return undefined;
    const value = this.seeds[name]!;
    const h = createHash('sha256').update(value).digest('hex');
    const id = `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
    return { [id]: { value, stages: ['AWSCURRENT'], created: 0 } };
  }
}

/** True when `name` has been written to `file` (not only seeded). */
export function isPersisted(file: string, name: string): boolean {
  return existsSync(file) && Object.hasOwn(JSON.parse(readFileSync(file, 'utf8')) as object, name);
}

export const notFound = () => new AwsError('ResourceNotFoundException', "Secrets Manager can't find the specified secret.");

/** The version a request names by id or stage (AWSCURRENT by default). */
export function findVersion(state: SecretState, versionId?: string, stage?: string): [string, SecretVersion] {
  const wanted = stage ?? (versionId ? undefined : 'AWSCURRENT');
  const hit = Object.entries(state).find(([id, v]) => (!versionId || id === versionId) && (!wanted || v.stages.includes(wanted)));
  if (!hit) throw new AwsError('ResourceNotFoundException', "Secrets Manager can't find the specified secret value for staging label or version.");
  return hit;
}

/** PutSecretValue: a new version (id = ClientRequestToken), AWSCURRENT unless stages are given. */
export function putVersion(state: SecretState, value: string, token: string | undefined, stages: string[] | undefined): { id: string; stages: string[] } {
  const id = token ?? randomUUID();
  const existing = state[id];
  if (existing) {
    // Same token and value is an idempotent retry; a different value under it is refused.
    if (existing.value === value) return { id, stages: existing.stages };
    throw new AwsError('ResourceExistsException', `A resource with the ID ${id} already exists.`);
  }
  state[id] = { value, stages: [], created: Date.now() };
  for (const stage of stages ?? ['AWSCURRENT']) moveStage(state, stage, id, undefined, true);
  return { id, stages: state[id]!.stages };
}

/**
 * UpdateSecretVersionStage: a label attached elsewhere moves only when RemoveFromVersionId
 * names the version holding it (`force` is PutSecretValue's implicit move). Moving
 * AWSCURRENT moves AWSPREVIOUS to the version it left.
 */
export function moveStage(state: SecretState, stage: string, to: string | undefined, from: string | undefined, force = false): void {
  if (to !== undefined && !state[to]) throw new AwsError('InvalidParameterException', `version ${to} does not exist`);
  if (from !== undefined && !state[from]) throw new AwsError('InvalidParameterException', `version ${from} does not exist`);
  const holder = Object.keys(state).find((id) => state[id]!.stages.includes(stage));
  if (holder !== undefined && holder !== to && holder !== from && !force) {
    throw new AwsError(
      'InvalidParameterException',
      `The staging label ${stage} is currently attached to version ${holder}. You must specify that version in RemoveFromVersionId.`,
    );
  }
  if (holder !== undefined && holder !== to) {
    state[holder]!.stages = state[holder]!.stages.filter((s) => s !== stage);
    if (stage === 'AWSCURRENT') moveStage(state, 'AWSPREVIOUS', holder, undefined, true);
  }
  if (to !== undefined && !state[to]!.stages.includes(stage)) state[to]!.stages.push(stage);
}

function withLock<T>(lock: string, fn: () => T): T {
  const deadline = Date.now() + LOCK_WAIT_MS;
  for (;;) {
    try {
      closeSync(openSync(lock, 'wx'));
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      // A lock left by a process that died mid-write is taken over after a while.
      if (Date.now() - safeMtime(lock) > LOCK_STALE_MS) rmSync(lock, { force: true });
      else if (Date.now() > deadline) throw new AwsError('InternalFailure', `secret store is locked (${lock})`, 500);
      else Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 10);
    }
  }
  try {
    return fn();
  } finally {
    rmSync(lock, { force: true });
  }
}

function safeMtime(path: string): number {
  try {
    return statSync(path).mtimeMs;
  } catch {
    return Date.now();
  }
}
