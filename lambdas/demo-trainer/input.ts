/**
 * The demo trainer's input rules, answered as Cog answers a bad input (422 details). Apart from
 * the trainer so that the backend which starts demo runs on AWS bundles no zip libraries.
 */
export function validate(input: Record<string, unknown>) {
  const problems: { loc: string[]; msg: string; type: string }[] = [];
  for (const f of ['instance_prompt', 'class_prompt', 'instance_data']) {
    if (typeof input[f] !== 'string' || input[f] === '') problems.push({ loc: ['body', 'input', f], msg: 'field required', type: 'value_error.missing' });
  }
  const steps = input.max_train_steps;
  if (steps !== undefined && (!Number.isInteger(steps) || (steps as number) < 1 || (steps as number) > 100_000)) {
    problems.push({ loc: ['body', 'input', 'max_train_steps'], msg: 'ensure this value is an integer between 1 and 100000', type: 'value_error' });
  }
  const format = input.output_format;
  if (format !== undefined && format !== 'diffusers' && format !== 'lora') {
    problems.push({ loc: ['body', 'input', 'output_format'], msg: "value is not a valid enumeration member; permitted: 'diffusers', 'lora'", type: 'type_error.enum' });
  }
  return problems;
}
