/**
 * A trainer's log. Cog and Replicate send the whole log so far with every update, and a chatty
 * 30-minute run writes megabytes, while a DynamoDB item ends at 400 KB (with the input, notes and
 * error beside it). So the training record keeps the log's tail, what `logs` shows, and a log
 * longer than the tail is kept whole in the data bucket, overwritten with every longer update
 * (`GET /v1/trainings/{id}/logs` answers it). It expires with the training's other objects.
 */
import { PutObjectCommand } from '@aws-sdk/client-s3';
import type { BaseDeps, Clients } from './deps.ts';
import { StepError, StepErrors } from './steps.ts';

export const LOGS_PREFIX = 'logs/';
export const logKey = (trainingId: string): string => `${LOGS_PREFIX}${trainingId}.txt`;

/** UTF-8 bytes of log the record keeps: well inside the item, beside up to 40 KB of notes and the input. */
export const LOG_TAIL_BYTES = 64 * 1024;

/**
 * The end of `log` in at most `maxBytes` UTF-8 bytes, from the start of a line where one starts
 * inside that window (else from a whole character): the whole log when it fits.
 */
export function logTail(log: string, maxBytes: number = LOG_TAIL_BYTES): string {
  const bytes = Buffer.from(log, 'utf8');
  if (bytes.length <= maxBytes) return log;
  let start = bytes.length - maxBytes;
  // A UTF-8 continuation byte (10xxxxxx) is inside a character: start at the next one.
  while (start < bytes.length && (bytes[start]! & 0xc0) === 0x80) start++;
  const newline = bytes.indexOf(0x0a, start);
  if (newline !== -1 && newline + 1 < bytes.length) start = newline + 1;
  return bytes.subarray(start).toString('utf8');
}

/** UTF-8 bytes of a trainer's error the record keeps: a traceback can be as long as a log. */
export const ERROR_MAX_BYTES = 16 * 1024;

/** A trainer's error as the record keeps it: whole when it fits, else its end (where a traceback names the exception), marked cut. */
export function boundedError(error: string): string {
  const tail = logTail(error, ERROR_MAX_BYTES - 4);
  return tail.length === error.length ? error : `…\n${tail}`;
}

/** What of a new log the record keeps: its tail, its length, and whether the bucket must hold it whole. */
export function recordedLog(log: string): { tail: string; length: number; whole: boolean } {
  const tail = logTail(log);
  return { tail, length: log.length, whole: tail.length === log.length };
}

/** Overwrites the training's whole log in the bucket. A failure is transient: the trainer retries its callback, the step retries. */
export async function saveWholeLog(d: Pick<BaseDeps, 'bucket'> & Pick<Clients, 's3'>, trainingId: string, log: string): Promise<void> {
  try {
    await d.s3.send(
      new PutObjectCommand({ Bucket: d.bucket, Key: logKey(trainingId), Body: log, ContentType: 'text/plain; charset=utf-8' }),
    );
  } catch (e) {
    throw new StepError(StepErrors.Transient, `saving the trainer's log failed: ${(e as Error).name}: ${(e as Error).message}`);
  }
}

