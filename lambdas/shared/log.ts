/**
 * Structured JSON logs through Powertools Logger (level from POWERTOOLS_LOG_LEVEL / LOG_LEVEL,
 * its line format, error formatting, X-Ray trace id), behind the small API the handlers use.
 * Every line is scrubbed by a JSON replacer: values under keys that can hold secrets are
 * replaced, and URLs lose their query strings (presigned URLs, callback secrets).
 *
 * The request id and cold start come from the Lambda context a handler passes, as per-line
 * keys rather than Powertools' addContext on a shared logger: local mode runs every handler
 * concurrently in one process, and per-line keys cannot cross from one request to another.
 */
import { Logger as PowertoolsLogger } from '@aws-lambda-powertools/logger';
import type { ConstructorOptions } from '@aws-lambda-powertools/logger/types';
import type { Context } from 'aws-lambda';

const SECRET_KEYS = /token|secret|password|authorization|signature|upload_url|callback/i;
const QUERY = /(https?:\/\/[^\s?#"]+)\?[^\s"#]*/g;

function scrub(key: string, value: unknown): unknown {
  if (key && SECRET_KEYS.test(key)) return '[redacted]';
  if (typeof value === 'string') return value.replace(QUERY, '$1?[redacted]');
  // Powertools formats errors after this replacer; hand it the message already scrubbed.
  if (value instanceof Error) return { name: value.name, message: value.message.replace(QUERY, '$1?[redacted]'), stack: value.stack?.replace(QUERY, '$1?[redacted]') };
  return value;
}

type Sink = (line: string) => void;
let sink: Sink = (line) => process.stdout.write(line + '\n');
/** Local mode and tests redirect logs (to capture them or keep the terminal readable). */
export function setLogSink(s: Sink): void {
  sink = s;
}

/** Powertools' logger, printing through the sink. */
class SinkLogger extends PowertoolsLogger {
  protected override printLog(_level: number, log: Parameters<PowertoolsLogger['printLog']>[1]): void {
    log.prepareForPrint();
    sink(JSON.stringify(log.getAttributes(), this.getJsonReplacer()));
  }

  protected override createLogger(options?: ConstructorOptions): PowertoolsLogger {
    return new SinkLogger(options);
  }
}

export type Logger = {
  info(message: string, extra?: Record<string, unknown>): void;
  warn(message: string, extra?: Record<string, unknown>): void;
  error(message: string, extra?: Record<string, unknown>): void;
  /** The same logger with more keys on every line (and the request of `context`, if given). */
  with(keys: Record<string, unknown>, context?: Context): Logger;
};

const roots = new Map<string, PowertoolsLogger>();
const warm = new Set<string>();

/** `cold_start` is true on the first invocation a service sees in this process. */
function requestKeys(service: string, context: Context | undefined): Record<string, unknown> {
  if (!context) return {};
  const cold = !warm.has(service);
  warm.add(service);
  return { function_request_id: context.awsRequestId, cold_start: cold };
}

export function logger(service: string, keys: Record<string, unknown> = {}, context?: Context): Logger {
  let root = roots.get(service);
  if (!root) {
    root = new SinkLogger({ serviceName: service, jsonReplacerFn: scrub });
    roots.set(service, root);
  }
  const base = { ...requestKeys(service, context), ...keys };
  const pt = root;
  return {
    info: (m, e) => pt.info(m, { ...base, ...e }),
    warn: (m, e) => pt.warn(m, { ...base, ...e }),
    error: (m, e) => pt.error(m, { ...base, ...e }),
    with: (more, ctx) => logger(service, { ...base, ...requestKeys(service, ctx), ...more }),
  };
}
