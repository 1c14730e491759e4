/**
 * Whether a HeadObject/GetObject error means "no such key". Without `s3:ListBucket` (which our
 * roles do not get: scoped by prefix it does not cover HeadObject, unscoped it lists every
 * training's files) S3 answers a missing key with 403 instead of 404.
 */
export function isMissingObject(e: unknown): boolean {
  const status = (e as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
  return (e as Error).name === 'NotFound' || status === 404 || status === 403;
}
