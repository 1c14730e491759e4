/**
 * Lists per tenant on real dynalite, page size 2: each owner's pages are full, `next` is null
 * on the last page, `previous` walks back, and no other tenant's item shows. Trainings of two
 * tenants are interleaved in time, so a list that filtered one global list would come back
 * with short or empty pages that still carry `next`.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { matchPath, ROUTES } from '#shared/routes';
import { route, type ApiDeps, type ApiRequest } from '#lambdas/api/routing';
import { newTraining, startFixture, TEMPLATE_DIGEST, type Fixture } from '#test-helpers/aws-local';

let fx: Fixture;
let d: ApiDeps;
const ids: Record<string, string[]> = { alice: [], bob: [] };
const versions: Record<string, string[]> = { 'alice/dog': [], 'bob/cat': [] };

beforeAll(async () => {
  fx = await startFixture({ as: 'api' });
  // The list routes use only the base deps.
  d = fx.withConfig({ limits: { page_size: 2 } }) as unknown as ApiDeps;
  // Oldest first: alice, bob, bob, alice, bob, alice, bob (alice 3, bob 4).
  const order = ['alice', 'bob', 'bob', 'alice', 'bob', 'alice', 'bob'];
  for (const [i, owner] of order.entries()) {
    const created_at = new Date(Date.UTC(2026, 0, 1, 0, i)).toISOString();
    const t = await newTraining(d, { owner, model: `${owner}/m`, created_at });
    ids[owner]!.unshift(t.id);
    const model = owner === 'alice' ? 'alice/dog' : 'bob/cat';
    const id = `${i}`.repeat(64).slice(0, 64);
    await d.store.putVersion({ id, model, image: `r/${model}@sha256:${id}`, notes: null, training_id: t.id, template: { name: 'v', repository: 'r', digest: TEMPLATE_DIGEST }, created_at });
    versions[model]!.unshift(id);
  }
});
afterAll(() => fx?.stop());

type ListBody = { next: string | null; previous: string | null; results: { id: string }[] };
const get = async (url: string, owners: string[]) => {
  const u = new URL(url, 'http://x');
  const m = matchPath(ROUTES.map((x) => x.path), u.pathname.replace(/^\/api/, ''))!;
  const r: ApiRequest = { method: 'GET', resource: m.path, params: m.pathParameters, query: Object.fromEntries(u.searchParams), body: null, owners };
  const res = await route(d, r);
  expect(res.status).toBe(200);
  return res.body as ListBody;
};
/** Every page from the first, following `next` as a client does. */
async function walk(path: string, owners: string[]): Promise<ListBody[]> {
  const pages = [await get(path, owners)];
  while (pages.at(-1)!.next) {
    pages.push(await get(pages.at(-1)!.next!, owners));
    if (pages.length > 10) throw new Error('next never ends');
  }
  return pages;
}

describe('GET /v1/trainings per tenant', () => {
  it.each([
    ['alice', [2, 1]],
    ['bob', [2, 2]],
  ])('%s gets full pages of their own, newest first, and no next at the end', async (owner, sizes) => {
    const pages = await walk('/v1/trainings', [owner]);
    expect(pages.map((p) => p.results.length)).toEqual(sizes);
    expect(pages.flatMap((p) => p.results.map((t) => t.id))).toEqual(ids[owner]);
    expect(pages.at(-1)!.next).toBeNull();
    expect(pages[0]!.previous).toBeNull();
  });

  it('walks back with previous', async () => {
    const pages = await walk('/v1/trainings', ['bob']);
    const back = await get(pages[1]!.previous!, ['bob']);
    expect(back.results.map((t) => t.id)).toEqual(ids.bob!.slice(0, 2));
    expect(back.previous).toBeNull();
  });

  it('merges the owners of a token with several, and lists all for *', async () => {
    const both = await walk('/v1/trainings', ['alice', 'bob']);
    expect(both.map((p) => p.results.length)).toEqual([2, 2, 2, 1]);
    const all = (await walk('/v1/trainings', ['*'])).flatMap((p) => p.results.map((t) => t.id));
    expect(both.flatMap((p) => p.results.map((t) => t.id))).toEqual(all);
    expect(all).toHaveLength(7);
  });
});

describe("GET /v1/models/{owner}/{name}/versions per tenant", () => {
  it.each([
    ['alice', 'alice/dog', [2, 1]],
    ['bob', 'bob/cat', [2, 2]],
  ])('%s pages through %s', async (owner, model, sizes) => {
    const pages = await walk(`/v1/models/${model}/versions`, [owner]);
    expect(pages.map((p) => p.results.length)).toEqual(sizes);
    expect(pages.flatMap((p) => p.results.map((v) => v.id))).toEqual(versions[model]);
    expect(pages.at(-1)!.next).toBeNull();
  });
});
