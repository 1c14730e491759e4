/** API errors: every 4xx/5xx answers `{"detail": …, "status": N}` (Replicate's shape). */
import type { APIGatewayProxyResult } from 'aws-lambda';
import type { $ZodError as ZodError } from 'zod/v4/core';

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly detail: string,
  ) {
    super(detail);
    this.name = 'ApiError';
  }
}

export const badRequest = (detail: string) => new ApiError(400, detail);
export const notFound = (detail = 'Not found.') => new ApiError(404, detail);

/** One line per problem, naming the field and what to fix. */
export function zodDetail(err: ZodError, root = ''): string {
  return err.issues
    .map((i) => {
      const path = [root, ...i.path.map(String)].filter(Boolean).join('.');
      if (i.code === 'unrecognized_keys') {
        const where = path ? ` in ${path}` : '';
        return `unknown field${i.keys.length > 1 ? 's' : ''}${where}: ${i.keys.join(', ')} (remove ${i.keys.length > 1 ? 'them' : 'it'})`;
      }
      return `${path || 'body'}: ${i.message}`;
    })
    .join('; ');
}

export function json(status: number, body: unknown, headers: Record<string, string> = {}): APIGatewayProxyResult {
  return {
    statusCode: status,
    headers: { 'content-type': 'application/json', 'cache-control': 'no-store', ...headers },
    body: JSON.stringify(body),
  };
}

export function errorResponse(e: unknown): APIGatewayProxyResult {
  if (e instanceof ApiError) return json(e.status, { detail: e.detail, status: e.status });
  return json(500, { detail: 'Internal error; the request id is in the service logs.', status: 500 });
}
