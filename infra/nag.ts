import type { DreamboothStack } from './stack.ts';
export function acknowledgeFindings(_stack: DreamboothStack): void {}
