/**
 * CodeBuild's stand-ins for the state machine's `startBuild.sync` tasks: the build-model project
 * (./build-model.ts), run as the build project's role after Step Functions' check of its own,
 * and the trainer image mirror (./mirror-image.ts).
 */
import { BUILD_PRINCIPAL, codeBuildProjectArn, LOCAL_BUILD_PROJECT } from '../names.ts';
import type { StandIn } from '../stepfunctions/stand-in.ts';
import { runLocalBuild } from './build-model.ts';
import { runLocalMirror } from './mirror-image.ts';

export const startBuildTask: StandIn = (ctx) => async (input, task) => {
  const services = await ctx.services;
  // Step Functions calls StartBuild with the state machine's role; the build runs with the project's.
  services.checkIntegration('codebuild:StartBuild', codeBuildProjectArn(LOCAL_BUILD_PROJECT), 'CodeBuild.AWSCodeBuildException');
  const { limits } = ctx.config;
  return runLocalBuild(
    input,
    {
      strategy: ctx.buildStrategy,
      registryHost: ctx.registryHost,
      s3: services.s3As(BUILD_PRINCIPAL),
      // The endpoints the docker path's AWS CLI shim calls, with the build project's credentials.
      env: services.envAs(BUILD_PRINCIPAL),
      log: ctx.log.build,
      limits: { maxEntries: limits.archive_max_entries, maxBytes: limits.archive_max_uncompressed_bytes },
    },
    task.signal,
  );
};

export const mirrorImageTask: StandIn = (ctx) => (input) => runLocalMirror(input, ctx.registryHost, ctx.log.build);
