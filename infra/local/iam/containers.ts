/**
 * A second function in one process: local mode runs each function in its own worker thread
 * (../lambda/functions.ts), but a handler test runs the function under test in the test's
 * process and may invoke another one there (a Lambda the fixture serves). A container is an
 * AsyncLocalStorage context: while that function runs, `process.env` shows its own credentials
 * over the process's, and the handlers' memoised clients (lambdas/shared/aws.ts `memo`) are
 * made and kept per container, so it signs with its own key.
 */
import { AsyncLocalStorage } from 'node:async_hooks';

export interface Container {
  name: string;
  /** Variables this function sees instead of the process's (undefined hides one). */
  env: Record<string, string | undefined>;
}

const storage = new AsyncLocalStorage<Container>();
/** Read by lambdas/shared/aws.ts; absent on Lambda, where one process is one container. */
const HOOK = Symbol.for('dreambooth.container');
let installed = false;
/** The container outside any `runAs`: the process's own, until `newProcessContainer`. */
let outside: object | undefined;

export function installContainers(): void {
  if (installed) return;
  installed = true;
  (globalThis as Record<symbol, unknown>)[HOOK] = () => storage.getStore() ?? outside;
  const real = process.env;
  const own = (key: string | symbol) => {
    const c = storage.getStore();
    return c && typeof key === 'string' && Object.hasOwn(c.env, key) ? c : undefined;
  };
  process.env = new Proxy(real, {
    get: (t, k) => (own(k) ? own(k)!.env[k as string] : Reflect.get(t, k)),
    set: (t, k, v) => {
      const c = own(k);
      if (c) c.env[k as string] = String(v);
      else Reflect.set(t, k, String(v));
      return true;
    },
    deleteProperty: (t, k) => {
      const c = own(k);
      if (c) c.env[k as string] = undefined;
      else Reflect.deleteProperty(t, k);
      return true;
    },
    has: (t, k) => (own(k) ? own(k)!.env[k as string] !== undefined : Reflect.has(t, k)),
    ownKeys: (t) => {
      const c = storage.getStore();
      if (!c) return Reflect.ownKeys(t);
      const keys = new Set([...Reflect.ownKeys(t), ...Object.keys(c.env)]);
      return [...keys].filter((k) => typeof k !== 'string' || !Object.hasOwn(c.env, k) || c.env[k] !== undefined);
    },
    getOwnPropertyDescriptor: (t, k) => {
      const c = own(k);
      if (!c) return Reflect.getOwnPropertyDescriptor(t, k);
      const value = c.env[k as string];
      return value === undefined ? undefined : { value, writable: true, enumerable: true, configurable: true };
    },
  });
}

/** Runs `fn` (and everything it starts) as the function `container.name`. */
export function runAs<T>(container: Container, fn: () => T): T {
  installContainers();
  return storage.run(container, fn);
}

export const currentContainer = (): Container | undefined => storage.getStore();

/**
 * The process starts over as a new container: the clients memoised so far (an earlier test
 * fixture's, with its endpoints and credentials resolved) are not handed out again. A fixture
 * calls it before it makes its own, as a new Lambda container would.
 */
export function newProcessContainer(): void {
  installContainers();
  outside = {};
}
