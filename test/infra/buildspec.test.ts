/**
 * buildspecs/build-model.yml: its shape, and its commands run through bash against recording
 * stand-ins for aws, docker and unzip.
 */
import { execFile } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parse } from 'yaml';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { tarball } from '#test-helpers/tars';
import { repoFile } from '#test-helpers/paths';

const spec = parse(readFileSync(repoFile('buildspecs/build-model.yml'), 'utf8'));
const commands = (phase: string): string[] => spec.phases[phase].commands;
const allCommands = () => Object.keys(spec.phases).flatMap(commands);

const DIGEST = '3f'.repeat(32);
const SERVING_DIGEST = '5e'.repeat(32);
const WEIGHTS_LAYER = `sha256:${'b'.repeat(64)}`;
const REPOSITORY = '123456789012.dkr.ecr.us-east-1.amazonaws.com/dreambooth/alice/my-model';
const NOTES = `It's "quoted" $HOME \`uname\` $(id)\nsecond line; rm -rf /\n`;

/**
 * Each call appends: program name and arguments, NUL-separated, then a record separator. Under a
 * lock: the two sides of a pipe run at once, and their several writes would interleave.
 */
const STUB = `#!/bin/bash
{ flock 9; { printf '%s\\0' "$(basename "$0")" "$@"; printf '\\036'; } >> "$STUB_LOG"; } 9>> "$STUB_LOG.lock"
case "$(basename "$0") $1" in
  "docker login") cat > "$STUB_LOG.stdin" ;;
  "aws ecr") [ "$2" = get-login-password ] && printf 'ecr-password' ; [ "$2" = describe-repositories ] && exit "\${DESCRIBE_EXIT:-0}" ;;
  "aws s3") if [ "$4" = - ]; then cat "$S3_FIXTURE"; elif [ "$4" = notes.txt ]; then cat "$NOTES_FIXTURE" > notes.txt || exit 1; else printf 'zip' > "$4"; fi ;;
  "unzip "*) mkdir -p weights && touch weights/model_index.json ;;
  "docker inspect") case "\${@: -1}" in
      *-sagemaker) printf '%s\\n' "$REPO_FOR_INSPECT@sha256:\${SERVING_DIGEST}" "" ;;
      *) printf '%s\\n' "other.example/x@sha256:${'0'.repeat(64)}" "$REPO_FOR_INSPECT@sha256:$DIGEST_FOR_INSPECT" "" ;;
    esac ;;
  "docker image") printf '%s\\n' "sha256:${'a'.repeat(64)}" "${WEIGHTS_LAYER}" "" ;;
esac
exit 0
`;

describe('the buildspec', () => {
  it('exports the digest and image, and logs in only through stdin', () => {
    expect(spec.version).toBe(0.2);
    expect(spec.env['exported-variables']).toEqual(['IMAGE_DIGEST', 'IMAGE_URI', 'IMAGE_SERVING_URI']);
    const logins = allCommands().filter((c) => c.includes('docker login'));
    expect(logins.length).toBeGreaterThanOrEqual(2);
    for (const c of logins) {
      expect(c).toContain('--password-stdin');
      expect(c).not.toMatch(/--password[ =](?!-stdin)|-p /);
    }
  });

  describe('run through bash', () => {
    let dir: string;
    beforeEach(() => {
      dir = mkdtempSync(join(tmpdir(), 'buildspec-'));
      for (const name of ['aws', 'docker', 'unzip']) {
        writeFileSync(join(dir, name), STUB);
        chmodSync(join(dir, name), 0o755);
      }
    });
    afterEach(() => rmSync(dir, { recursive: true, force: true }));

    /** Runs phases the way local mode does; returns the stand-ins' calls and the exported variables. */
    async function runPhases(phases: string[], env: Record<string, string>) {
      const script = ['set -eo pipefail', ...phases.flatMap(commands), 'printf "%s\\n%s\\n%s" "$IMAGE_DIGEST" "$IMAGE_URI" "$IMAGE_SERVING_URI" > exported'].join('\n');
      const work = join(dir, 'work');
      await promisify(execFile)('bash', ['-c', `mkdir -p "${work}" && cd "${work}" && ${'eval "$SCRIPT"'}`], {
        env: { PATH: `${dir}:/usr/bin:/bin`, STUB_LOG: join(dir, 'calls'), SCRIPT: script, ...env },
      });
      const calls = readFileSync(join(dir, 'calls'), 'utf8')
        .split('\x1e')
        .filter(Boolean)
        .map((record) => record.split('\0').slice(0, -1));
      const [digest, uri, serving] = readFileSync(join(work, 'exported'), 'utf8').split('\n');
      return { calls, work, exported: { digest, uri, ...(serving ? { serving } : {}) } };
    }

    const buildEnv = {
      TRAINING_ID: 'abcdefghij0123456789',
      WEIGHTS_S3_URI: 's3://bucket/staged/abcdefghij0123456789/output.zip',
      TEMPLATE_IMAGE: `r8.im/anotherjesse/vanilla-template@sha256:${'1'.repeat(64)}`,
      IMAGE_REPOSITORY: REPOSITORY,
      IMAGE_TAG: 'abcdefghij0123456789',
      NOTES_S3_URI: '',
    };
    const NOTES_URI = 's3://bucket/staged/abcdefghij0123456789/build/notes.txt';

    it('builds FROM the pinned template with the weights, labels intact (the notes read from S3 byte for byte), and pushes', async () => {
      writeFileSync(join(dir, 'notes'), NOTES);
      const { calls, work } = await runPhases(['pre_build', 'build'], {
        ...buildEnv,
        NOTES_S3_URI: NOTES_URI,
        NOTES_FIXTURE: join(dir, 'notes'),
        REGISTRY_TYPE: 'oci',
        REGISTRY_HOST: '127.0.0.1:5000',
        REGISTRY_USERNAME: '',
      });
      expect(readFileSync(join(work, 'Dockerfile'), 'utf8')).toBe(
        `FROM ${buildEnv.TEMPLATE_IMAGE}\nCOPY weights /src/weights\n`,
      );
      expect(calls).toEqual([
        ['aws', 's3', 'cp', buildEnv.WEIGHTS_S3_URI, 'weights.zip', '--only-show-errors'],
        ['unzip', '-q', 'weights.zip', '-d', 'weights'],
        ['aws', 's3', 'cp', NOTES_URI, 'notes.txt', '--only-show-errors'],
        [
          'docker',
          'build',
          '--label',
          `org.opencontainers.image.description=${NOTES}`,
          '--label',
          `ai.dreambooth.training-id=${buildEnv.TRAINING_ID}`,
          '-t',
          `${REPOSITORY}:${buildEnv.IMAGE_TAG}`,
          '.',
        ],
        ['docker', 'push', `${REPOSITORY}:${buildEnv.IMAGE_TAG}`],
      ]);
      // The notes were no part of the build context.
      expect(readdirSync(work).sort()).toEqual(['Dockerfile', 'exported', 'weights']);
    });

    it('labels an image without notes with an empty description, reading nothing for them', async () => {
      const { calls } = await runPhases(['pre_build', 'build'], { ...buildEnv, REGISTRY_TYPE: 'oci', REGISTRY_HOST: '127.0.0.1:5000', REGISTRY_USERNAME: '' });
      expect(calls.filter((c) => c[0] === 'aws').map((c) => c[3])).toEqual([buildEnv.WEIGHTS_S3_URI]);
      expect(calls.find((c) => c[1] === 'build')).toContain('org.opencontainers.image.description=');
    });

    it('fails when the notes cannot be read', async () => {
      await expect(
        runPhases(['pre_build'], { ...buildEnv, NOTES_S3_URI: NOTES_URI, NOTES_FIXTURE: join(dir, 'none'), REGISTRY_TYPE: 'oci', REGISTRY_HOST: '127.0.0.1:5000', REGISTRY_USERNAME: '' }),
      ).rejects.toThrow();
    });

    const oci = { REGISTRY_TYPE: 'oci', REGISTRY_HOST: '127.0.0.1:5000', REGISTRY_USERNAME: '' };

    it.each([
      ['tar', false],
      ['tar.gz', true],
    ])('streams a %s into weights/ without keeping the archive', async (format, gzip) => {
      const fixture = join(dir, 'weights.tar');
      writeFileSync(fixture, await tarball([{ name: 'output/', type: 'directory' }, { name: 'output/lora.safetensors', data: 'lora' }], { gzip }));
      const uri = `s3://bucket/staged/${buildEnv.TRAINING_ID}/trained_model.tar`;
      const { calls, work } = await runPhases(['pre_build'], { ...buildEnv, ...oci, WEIGHTS_FORMAT: format, WEIGHTS_S3_URI: uri, S3_FIXTURE: fixture });
      expect(calls).toEqual([['aws', 's3', 'cp', uri, '-', '--only-show-errors']]);
      expect(readFileSync(join(work, 'weights', 'output', 'lora.safetensors'), 'utf8')).toBe('lora');
      expect(readdirSync(work).sort()).toEqual(['Dockerfile', 'exported', 'notes.txt', 'weights']);
    });

    it('keeps a single file under its staged name', async () => {
      const uri = `s3://bucket/staged/${buildEnv.TRAINING_ID}/lora.safetensors`;
      const { calls } = await runPhases(['pre_build'], { ...buildEnv, ...oci, WEIGHTS_FORMAT: 'file', WEIGHTS_S3_URI: uri });
      expect(calls).toEqual([['aws', 's3', 'cp', uri, 'weights/lora.safetensors', '--only-show-errors']]);
    });

    it('fails on a format it does not know, and when the download of a tar fails', async () => {
      await expect(runPhases(['pre_build'], { ...buildEnv, ...oci, WEIGHTS_FORMAT: 'rar' })).rejects.toThrow(/unknown WEIGHTS_FORMAT: rar/);
      // The stand-in's `cat` of a missing fixture fails on the left of the pipe: pipefail fails the command.
      await expect(runPhases(['pre_build'], { ...buildEnv, ...oci, WEIGHTS_FORMAT: 'tar', S3_FIXTURE: join(dir, 'none') })).rejects.toThrow();
    });

    it('logs in to an OCI registry with credentials through stdin', async () => {
      const { calls } = await runPhases(['pre_build'], {
        ...buildEnv,
        REGISTRY_TYPE: 'oci',
        REGISTRY_HOST: 'ghcr.io',
        REGISTRY_USERNAME: 'robot',
        REGISTRY_PASSWORD: 'p@ss word $x',
      });
      expect(calls[0]).toEqual(['docker', 'login', '--username', 'robot', '--password-stdin', 'ghcr.io']);
      expect(readFileSync(join(dir, 'calls.stdin'), 'utf8')).toBe('p@ss word $x');
    });

    it('logs in to ECR and creates the model repository when missing', async () => {
      const { calls } = await runPhases(['pre_build'], {
        ...buildEnv,
        REGISTRY_TYPE: 'ecr',
        REGISTRY_HOST: '123456789012.dkr.ecr.us-east-1.amazonaws.com',
        DESCRIBE_EXIT: '254',
      });
      // The two sides of the login pipe run at once: their order is not fixed.
      expect(calls.slice(0, 2)).toEqual(
        expect.arrayContaining([
          ['aws', 'ecr', 'get-login-password'],
          ['docker', 'login', '--username', 'AWS', '--password-stdin', '123456789012.dkr.ecr.us-east-1.amazonaws.com'],
        ]),
      );
      expect(calls.slice(2, 5)).toEqual([
        ['aws', 'ecr', 'describe-repositories', '--repository-names', 'dreambooth/alice/my-model'],
        [
          'aws',
          'ecr',
          'create-repository',
          '--repository-name',
          'dreambooth/alice/my-model',
          '--image-scanning-configuration',
          'scanOnPush=true',
        ],
        ['aws', 's3', 'cp', buildEnv.WEIGHTS_S3_URI, 'weights.zip', '--only-show-errors'],
      ]);
      expect(readFileSync(join(dir, 'calls.stdin'), 'utf8')).toBe('ecr-password');
    });

    /** The project's source: the serving adapter, in the build's folder. */
    const withAdapter = () => {
      mkdirSync(join(dir, 'work'));
      writeFileSync(join(dir, 'work', 'sagemaker_adapter.py'), '# adapter\n');
    };
    const pushed = { CODEBUILD_BUILD_SUCCEEDING: '1', REPO_FOR_INSPECT: REPOSITORY, DIGEST_FOR_INSPECT: DIGEST, SERVING_DIGEST, WEIGHTS_LAYER };

    it('exports the pushed digest of this repository after a successful build', async () => {
      withAdapter();
      const { exported } = await runPhases(['post_build'], { ...buildEnv, ...pushed });
      expect(exported).toEqual({ digest: DIGEST, uri: `${REPOSITORY}@sha256:${DIGEST}`, serving: `${REPOSITORY}@sha256:${SERVING_DIGEST}` });
    });

    it('builds and pushes the SageMaker variant from the version, in a context of the adapter alone', async () => {
      withAdapter();
      const { calls, work } = await runPhases(['post_build'], { ...buildEnv, ...pushed });
      expect(readFileSync(join(work, 'serving', 'Dockerfile'), 'utf8')).toBe(
        `FROM ${REPOSITORY}:${buildEnv.IMAGE_TAG}\nCOPY sagemaker_adapter.py /opt/dreambooth/sagemaker_adapter.py\n` +
          'ENTRYPOINT ["python3", "/opt/dreambooth/sagemaker_adapter.py"]\nCMD ["serve"]\n',
      );
      expect(readdirSync(join(work, 'serving')).sort()).toEqual(['Dockerfile', 'sagemaker_adapter.py']);
      const tag = `${REPOSITORY}:${DIGEST}-sagemaker`;
      expect(calls.filter((c) => c[1] === 'build' || c[1] === 'push')).toEqual([
        ['docker', 'build', '--label', `ai.dreambooth.weights-digest=${WEIGHTS_LAYER}`, '-t', tag, 'serving'],
        ['docker', 'push', tag],
      ]);
    });

    it('fails the build when the variant has no digest in this repository', async () => {
      withAdapter();
      await expect(runPhases(['post_build'], { ...buildEnv, ...pushed, SERVING_DIGEST: 'none' })).rejects.toThrow();
    });

    it('fails the build when the pushed digest cannot be found', async () => {
      const run = runPhases(['post_build'], {
        ...buildEnv,
        CODEBUILD_BUILD_SUCCEEDING: '1',
        REPO_FOR_INSPECT: 'somewhere.else/repo',
        DIGEST_FOR_INSPECT: DIGEST,
      });
      await expect(run).rejects.toThrow();
    });
  });
});
