/**
 * Structured JSON logs carrying the training id. Written by hand instead of Powertools Logger
 * to keep every bundle small; the shape (level, message, timestamp, keys) is the same.
 * Values under keys that can hold secrets are replaced, and URLs lose their query strings.
 */
const SECRET_KEYS = /token|secret|password|authorization|signature|upload_url|callback/i;

function scrub(value: unknown, depth = 0): unknown {
  if (depth > 4) return '[…]';
  if (typeof value === 'string') return value.replace(/(https?:\/\/[^\s?#"]+)\?[^\s"#]*/g, '$1?[redacted]');
  if (Array.isArray(value)) return value.map((v) => scrub(v, depth + 1));
  if (value && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = SECRET_KEYS.test(k) ? '[redacted]' : scrub(v, depth + 1);
    return out;
  }
  return value;
}

export type Logger = {
  info(message: string, extra?: Record<string, unknown>): void;
  warn(message: string, extra?: Record<string, unknown>): void;
  error(message: string, extra?: Record<string, unknown>): void;
  with(keys: Record<string, unknown>): Logger;
};

type Sink = (line: string) => void;
let sink: Sink = (line) => process.stdout.write(line + '\n');
/** Local mode and tests redirect logs (to capture them or keep the terminal readable). */
export function setLogSink(s: Sink): void {
  sink = s;
}

export function logger(service: string, keys: Record<string, unknown> = {}): Logger {
  const write = (level: string, message: string, extra?: Record<string, unknown>) =>
    sink(JSON.stringify(scrub({ level, message, service, timestamp: new Date().toISOString(), ...keys, ...extra })));
  return {
    info: (m, e) => write('INFO', m, e),
    warn: (m, e) => write('WARN', m, e),
    error: (m, e) => write('ERROR', m, e),
    with: (more) => logger(service, { ...keys, ...more }),
  };
}
