/** The API as the command line speaks it: JSON over fetch, errors that say what happened. */

/** An answer of the API that is not 2xx: its `detail` is what the person needs to read. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly detail: string,
  ) {
    super(detail);
    this.name = 'ApiError';
  }
}

/** The API (or the upload URL) could not be reached at all. */
export class NetworkError extends Error {
  constructor(
    readonly url: string,
    cause: unknown,
  ) {
    super(`could not reach ${url}: ${describeCause(cause)}`);
    this.name = 'NetworkError';
  }
}

/** A mistake of the person at the keyboard, reported as is (no stack). */
export class UsageError extends Error {
  override name = 'UsageError';
}

function describeCause(e: unknown): string {
  const err = e as { name?: string; message?: string; cause?: { code?: string; message?: string } };
  if (err.name === 'TimeoutError') return 'no answer in time';
  return err.cause?.code ?? err.cause?.message ?? err.message ?? String(e);
}

/** A URL fit to print: presigned query strings are credentials. */
export const printable = (url: string) => url.split('?')[0]!;

export interface ClientOptions {
  baseUrl: string;
  token: string;
  timeoutMs?: number;
}

export class Client {
  readonly baseUrl: string;
  constructor(private readonly opts: ClientOptions) {
    this.baseUrl = opts.baseUrl.replace(/\/+$/, '');
  }

  // biome-ignore lint/suspicious/noExplicitAny: a caller that names no type reads the JSON as it comes
  get<T = any>(path: string): Promise<T> {
    return this.request<T>('GET', path);
  }

  // biome-ignore lint/suspicious/noExplicitAny: a caller that names no type reads the JSON as it comes
  post<T = any>(path: string, body?: unknown, headers: Record<string, string> = {}, timeoutMs?: number): Promise<T> {
    return this.request<T>('POST', path, body, headers, timeoutMs);
  }

  /** The header that authenticates a request to this API (files it serves need it too). */
  authorization(): Record<string, string> {
    return { authorization: `Bearer ${this.opts.token}` };
  }

  /** `next` links are absolute URLs, followed as given. */
  async request<T>(method: string, pathOrUrl: string, body?: unknown, headers: Record<string, string> = {}, timeoutMs?: number): Promise<T> {
    const url = /^https?:\/\//.test(pathOrUrl) ? pathOrUrl : this.baseUrl + pathOrUrl;
    let res: Response;
    try {
      res = await fetch(url, {
        method,
        headers: {
          ...this.authorization(),
          accept: 'application/json',
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
          ...headers,
        },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(timeoutMs ?? this.opts.timeoutMs ?? 30_000),
      });
    } catch (e) {
      throw new NetworkError(printable(url), e);
    }
    const text = await res.text().catch(() => '');
    // biome-ignore lint/suspicious/noExplicitAny: the body as parsed; an error's fields are read below, else it is returned as T
    let json: any = null;
    try {
      json = text ? JSON.parse(text) : null;
    } catch {
      /* a proxy's HTML page, say: reported below by status */
    }
    if (!res.ok) {
      const detail = typeof json?.detail === 'string' ? json.detail : json?.message ?? (text.slice(0, 200) || res.statusText);
      throw new ApiError(res.status, String(detail));
    }
    if (json === null) throw new ApiError(res.status, `${method} ${printable(url)} answered ${res.status} without JSON`);
    return json as T;
  }

  /** Every page of a list route (`{results, next}`), up to `max` items. */
  async list<T>(path: string, max = Infinity): Promise<T[]> {
    const out: T[] = [];
    let next: string | null = path;
    while (next && out.length < max) {
      const page: { results: T[]; next: string | null } = await this.get(next);
      out.push(...page.results);
      next = page.next;
    }
    return out.slice(0, max);
  }
}
