/**
 * Logs through Powertools Logger: the request id, cold start and training id on each line,
 * the level from LOG_LEVEL, nothing secret (tokens, secrets, presigned URLs), and the top-level
 * fields the metric filters match (monitoring.ts).
 */
import type { Context } from 'aws-lambda';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { logger, setLogSink } from '#shared/log';

let lines: Record<string, unknown>[];
let raw: string[];
const context = (id: string) => ({ awsRequestId: id, functionName: 'f', getRemainingTimeInMillis: () => 1000 }) as unknown as Context;

beforeEach(() => {
  lines = [];
  raw = [];
  setLogSink((line) => {
    raw.push(line);
    lines.push(JSON.parse(line));
  });
});
afterEach(() => {
  delete process.env.LOG_LEVEL;
  setLogSink((line) => process.stdout.write(line + '\n'));
});

describe('logger', () => {
  it('carries the request id, cold start (first invocation only) and training id', () => {
    logger('svc-a', { training_id: 't1' }, context('req-1')).info('first');
    logger('svc-a', { training_id: 't2' }, context('req-2')).info('second');
    expect(lines[0]).toMatchObject({ level: 'INFO', message: 'first', service: 'svc-a', function_request_id: 'req-1', cold_start: true, training_id: 't1' });
    expect(lines[1]).toMatchObject({ function_request_id: 'req-2', cold_start: false, training_id: 't2' });
    expect(typeof lines[0]!.timestamp).toBe('string');
  });

  it('keeps the request keys of a derived logger', () => {
    const base = logger('svc-b');
    base.with({}, context('req-9')).with({ training_id: 't9' }).warn('derived');
    expect(lines[0]).toMatchObject({ level: 'WARN', function_request_id: 'req-9', training_id: 't9' });
  });

  it('takes its level from LOG_LEVEL', () => {
    process.env.LOG_LEVEL = 'WARN';
    const log = logger('svc-warn-only');
    log.info('dropped');
    log.warn('kept');
    log.error('kept too');
    expect(lines.map((l) => l.message)).toEqual(['kept', 'kept too']);
  });

  it('scrubs tokens, secrets and presigned URLs, also inside errors', () => {
    const presigned = 'https://bucket.s3.amazonaws.com/k.zip?X-Amz-Signature=abc123&X-Amz-Credential=AKIA';
    logger('svc-c').error(`fetch ${presigned} failed`, {
      token: 'r8_0123456789',
      headers: { authorization: 'Bearer r8_x' },
      nested: { callback_url: 'https://api/x?secret=s3cr3t', upload_url: presigned, list: [presigned] },
      error: new Error(`GET ${presigned}: 403`),
    });
    const line = raw.join('\n');
    for (const secret of ['r8_0123456789', 'r8_x', 's3cr3t', 'abc123', 'AKIA']) expect(line).not.toContain(secret);
    expect(lines[0]!.message).toBe('fetch https://bucket.s3.amazonaws.com/k.zip?[redacted] failed');
    expect(lines[0]).toMatchObject({ token: '[redacted]', headers: { authorization: '[redacted]' } });
  });

  it('writes the fields the metric filters match at the top level', () => {
    // As the notify, record and trainer-callback handlers log them.
    logger('notify', { training_id: 't' }, context('r')).info('webhook', { event: 'completed', delivered: true, detail: '200' });
    logger('record', { training_id: 't' }).info('recorded webhook_given_up', {});
    logger('trainer-callback', { training_id: 't' }).info('trainer callback', { status: 401 });
    expect(lines[0]).toMatchObject({ message: 'webhook', delivered: true });
    expect(lines[1]).toMatchObject({ message: 'recorded webhook_given_up' });
    expect(lines[2]).toMatchObject({ message: 'trainer callback', status: 401 });
  });
});
