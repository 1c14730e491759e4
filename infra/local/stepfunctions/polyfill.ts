/**
 * aws-local-stepfunctions calls `Promise.withResolvers` (Node ≥ 22); local mode also runs on
 * Node 20, so provide it when missing. Import this before running any state machine.
 */
type Resolvers<T> = { promise: Promise<T>; resolve: (v: T) => void; reject: (e: unknown) => void };
const P = Promise as unknown as { withResolvers?: <T>() => Resolvers<T> };

P.withResolvers ??= <T>(): Resolvers<T> => {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
};
