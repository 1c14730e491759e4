/**
 * `dreambooth`: train from a folder of photos and follow it to a model version, against any
 * deployment (local mode or AWS). Arguments by commander (sub-commands, help and errors for
 * free, no dependencies); progress by cli-progress (see progress.ts).
 */
import { readFileSync } from 'node:fs';
import { Command, Option } from 'commander';
import { action } from './commands/common.ts';
import { login, logout } from './commands/login.ts';
import { cancel, get, list, logs, templates, trainers, versions } from './commands/read.ts';
import { run } from './commands/run.ts';
import { retemplate, train } from './commands/train.ts';

const collect = (v: string, all: string[]) => [...all, v];
const json = () => new Option('--json', 'print JSON for scripts instead of a table');

const { version } = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };

const program = new Command('dreambooth')
  .version(version)
  .description('Train DreamBooth models and run them against a dreambooth-api deployment (local mode or AWS).')
  .option('--api <url>', 'the API base URL (default: DREAMBOOTH_API_URL, `dreambooth login`, or a running local mode)')
  .option('--token <token>', 'the API token (default: DREAMBOOTH_API_TOKEN, `dreambooth login`, or local mode’s)')
  .showHelpAfterError()
  .addHelpText(
    'after',
    `
Example:
  dreambooth train ./photos --model acme/cjw -i instance_prompt="a photo of a cjw person" -i class_prompt="a photo of a person"
  dreambooth run acme/cjw -i prompt="a photo of a cjw person on the moon"`,
  );

program
  .command('train')
  .description('upload a folder of photos (jpg, jpeg, png, webp) or a .zip, train, and follow it to a new model version')
  .argument('<folder-or-zip>', 'the photos')
  .requiredOption('-m, --model <owner/name>', 'the model to push the new version to (created on first push)')
  .option('--trainer <name>', 'a trainer from `dreambooth trainers` (default: the only one configured)')
  .option('--template <template>', 'a template from `dreambooth templates` (default: the configured default)')
  .option('--notes <text>', 'notes kept with the version')
  .option('-i, --input <key=value>', 'a trainer input; repeat for each (numbers and true/false are sent as such)', collect, [])
  .option('--webhook <url>', 'POSTed the training when it ends (webhook_completed)')
  .option('--no-wait', 'print the training id and return at once')
  .option('--cancel-on-interrupt', 'cancel the training on Ctrl-C without asking')
  .addOption(json())
  .action(action(train));

program
  .command('run')
  .description("run a prediction on a model's version (the latest without :version), save its files and print their paths")
  .argument('<owner/name[:version]>', 'the model, and a version of it')
  .option('-i, --input <key=value>', 'an input; repeat for each (numbers and true/false are sent as such; key=@file sends a file)', collect, [])
  .option('-o, --output <dir>', 'where the files go (default: the current directory)')
  .addOption(json())
  .action(action(run));
program.command('list').description('recent trainings, newest first').option('--limit <n>', 'at most this many', '20').addOption(json()).action(action(list));
program.command('get').description('one training').argument('<id>').addOption(json()).action(action(get));
program
  .command('logs')
  .description("a training's logs")
  .argument('<id>')
  .option('-f, --follow', 'keep printing new lines until the training ends')
  .action(action(logs));
program.command('cancel').description('cancel a training').argument('<id>').addOption(json()).action(action(cancel));
program
  .command('versions')
  .description("a model's versions, newest first")
  .argument('<owner/name>')
  .option('--limit <n>', 'at most this many', '20')
  .addOption(json())
  .action(action(versions));
program
  .command('retemplate')
  .description("a new version from a succeeded training's weights on another template, without retraining")
  .argument('<id>', 'the succeeded training')
  .requiredOption('--template <template>', 'the template to build on')
  .option('--notes <text>', 'notes kept with the version')
  .option('--webhook <url>', 'POSTed the training when it ends')
  .option('--no-wait', 'print the new training id and return at once')
  .option('--cancel-on-interrupt', 'cancel on Ctrl-C without asking')
  .addOption(json())
  .action(action(retemplate));
program.command('trainers').description('the configured trainers').addOption(json()).action(action(trainers));
program.command('templates').description('the template catalog').addOption(json()).action(action(templates));
program
  .command('login')
  .description('save the API URL and token (asked for, not echoed) in ~/.config/dreambooth/config.json, mode 0600')
  .action(action(login));
program.command('logout').description('forget the saved login').action(action(logout));

await program.parseAsync();
