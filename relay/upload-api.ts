/** The API's trainer-upload routes as the relay calls them, with the trainer's upload token. */

const API_TIMEOUT_MS = 30_000;

export class RelayError extends Error {
  override name = 'RelayError';
}

export class UploadApi {
  constructor(private readonly opts: { api: string; trainer: string; token: string }) {}

  async call<T>(path: string, body: unknown): Promise<T> {
    const base = `${this.opts.api.replace(/\/+$/, '')}/v1/trainer-uploads/${encodeURIComponent(this.opts.trainer)}`;
    let res: Response;
    try {
      res = await fetch(base + path, {
        method: 'POST',
        headers: { authorization: `Bearer ${this.opts.token}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(API_TIMEOUT_MS),
      });
    } catch (e) {
      throw new RelayError(`the API is not reachable: ${(e as Error).message}`);
    }
    const text = await res.text();
    if (!res.ok) {
      const hint = res.status === 401 ? ' (check DREAMBOOTH_UPLOAD_TOKEN and the trainer name)' : '';
      throw new RelayError(`the API answered ${res.status}${hint}: ${detailOf(text)}`);
    }
    return JSON.parse(text) as T;
  }
}

function detailOf(text: string): string {
  try {
    return String((JSON.parse(text) as { detail?: unknown }).detail ?? '').slice(0, 300);
  } catch {
    return text.slice(0, 300);
  }
}
