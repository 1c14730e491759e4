/**
 * Every relative link in README.md and docs/*.md resolves: the file exists, and a `#anchor`
 * names a heading of its target as GitHub slugs it. Pages move and headings get renamed; a
 * newcomer who follows a dead link is lost, so a broken one fails here rather than on GitHub.
 * External links (http:, https:, mailto:) are not fetched: the tests run without a network.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, normalize } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from '#test-helpers/paths';


/** A document's text without fenced code blocks, so a `[x](y)` inside code is not a link. */
function withoutFences(text: string): string[] {
  const lines: string[] = [];
  let fence: string | null = null;
  for (const line of text.split('\n')) {
    const marker = line.match(/^\s*(`{3,}|~{3,})/)?.[1];
    if (fence === null && marker) fence = marker;
    else if (fence !== null && marker?.startsWith(fence)) fence = null;
    else if (fence === null) {
      lines.push(line);
      continue;
    }
    lines.push('');
  }
  return lines;
}

/** Inline code spans removed (a run of n backticks ends at the next run of exactly n). */
function withoutCodeSpans(line: string): string {
  return line.replace(/(`+)(?!`)[\s\S]*?(?<!`)\1(?!`)/g, '');
}

/** GitHub's heading slug: lowercase, punctuation other than '-' and '_' dropped, spaces → '-'. */
function slug(heading: string): string {
  const text = heading
    .replace(/!?\[([^\]]*)\]\([^)]*\)/g, '$1') // a link's text only
    .replace(/<[^>]+>/g, '') // inline HTML
    .replace(/[`*]/g, '');
  return text.trim().toLowerCase().replace(/[^\p{L}\p{M}\p{N}\p{Pc} -]/gu, '').replace(/ /g, '-');
}

/** The anchors a document offers: its headings' slugs (repeats get -1, -2 …) and HTML ids. */
function anchorsOf(text: string): Set<string> {
  const anchors = new Set<string>();
  const seen = new Map<string, number>();
  for (const line of withoutFences(text)) {
    const heading = line.match(/^ {0,3}#{1,6}\s+(.*?)(?:\s+#+)?\s*$/)?.[1];
    if (heading !== undefined) {
      const base = slug(heading);
      const n = seen.get(base) ?? 0;
      seen.set(base, n + 1);
      anchors.add(n === 0 ? base : `${base}-${n}`);
    }
    for (const m of line.matchAll(/<[a-z]+[^>]*\s(?:id|name)="([^"]+)"/gi)) anchors.add(m[1]!);
  }
  return anchors;
}

interface Link {
  line: number;
  target: string;
}

/** The link targets of a document: inline links and images, and reference definitions. */
function linksOf(text: string): Link[] {
  const links: Link[] = [];
  withoutFences(text).forEach((raw, i) => {
    const line = withoutCodeSpans(raw);
    for (const m of line.matchAll(/\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)) links.push({ line: i + 1, target: m[1]! });
    const definition = line.match(/^ {0,3}\[[^\]]+\]:\s+<?(\S+?)>?(?:\s|$)/)?.[1];
    if (definition) links.push({ line: i + 1, target: definition });
  });
  return links;
}

/**
 * Where a document's relative links lead nowhere, as `doc:line target: why`. `read` answers a
 * file's text, '' for a directory, undefined for nothing there.
 */
function brokenLinks(doc: string, read: (path: string) => string | undefined): string[] {
  const text = read(doc);
  if (text === undefined) return [`${doc}: no such document`];
  const broken: string[] = [];
  for (const { line, target } of linksOf(text)) {
    if (/^[a-z][a-z0-9+.-]*:/i.test(target) || target.startsWith('//')) continue; // external
    const hash = target.indexOf('#');
    const path = decodeURI(hash === -1 ? target : target.slice(0, hash));
    const anchor = hash === -1 ? null : decodeURIComponent(target.slice(hash + 1));
    const file = path === '' ? doc : normalize(join(dirname(doc), path));
    const where = `${doc}:${line} ${target}`;
    if (file.startsWith('..')) {
      broken.push(`${where}: leads outside the repository`);
      continue;
    }
    const targetText = read(file);
    if (targetText === undefined) {
      broken.push(`${where}: ${file} does not exist`);
      continue;
    }
    if (anchor === null || anchor === '') continue;
    if (!file.endsWith('.md')) {
      broken.push(`${where}: an anchor into ${file}, which is not a Markdown document`);
      continue;
    }
    if (!anchorsOf(targetText).has(anchor)) broken.push(`${where}: ${file} has no heading #${anchor}`);
  }
  return broken;
}

function readFromRepo(path: string): string | undefined {
  const full = join(ROOT, path);
  const stat = statSync(full, { throwIfNoEntry: false });
  if (!stat) return undefined;
  return stat.isDirectory() ? '' : readFileSync(full, 'utf8');
}

const DOCUMENTS = ['README.md', ...readdirSync(join(ROOT, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)];

describe('the links of the documents', () => {
  it('covers the README and every page of docs/', () => {
    expect(DOCUMENTS.length).toBeGreaterThan(10);
    // Every page is reachable from the README, so none is written and then lost.
    const fromReadme = new Set(
      linksOf(readFromRepo('README.md')!)
        .map((l) => l.target.split('#')[0]!)
        .filter((t) => t.startsWith('docs/'))
        .map((t) => normalize(t)),
    );
    expect(DOCUMENTS.filter((d) => d !== 'README.md' && !fromReadme.has(d))).toEqual([]);
  });

  for (const doc of DOCUMENTS) {
    it(`resolve in ${doc}`, () => {
      expect(brokenLinks(doc, readFromRepo)).toEqual([]);
    });
  }
});

describe('the link checker', () => {
  // Prepare: a small tree in memory, so the checker is shown to catch what it should.
  const files: Record<string, string> = {
    'README.md': [
      '# Title',
      '## `POST /v1/trainings` — train, build, push',
      '## Trainer capacity and the queue',
      '## Trainer capacity and the queue',
      '[ok](docs/a.md) [ok](docs/a.md#keys-and-values) [ok](#trainer-capacity-and-the-queue-1)',
      '[ok](#post-v1trainings--train-build-push) [ok](https://example.com/x#y)',
      '`[not a link](nowhere.md)`',
      '```',
      '[not a link either](nowhere.md)',
      '```',
      '[missing file](docs/nope.md) [missing anchor](docs/a.md#nope) [missing here](#nope)',
    ].join('\n'),
    'docs/a.md': '# A\n## Keys and values\n[up](../README.md#title)',
  };
  const read = (path: string): string | undefined => files[path];

  it('slugs headings as GitHub does', () => {
    expect(slug('`POST /v1/trainings` — train, build, push')).toBe('post-v1trainings--train-build-push');
    expect(slug('Training on your own AWS GPUs')).toBe('training-on-your-own-aws-gpus');
    expect(slug('IAM, enforced as on AWS')).toBe('iam-enforced-as-on-aws');
    expect(slug('9. Security defaults')).toBe('9-security-defaults');
    expect(slug('snake_case stays')).toBe('snake_case-stays');
  });

  it('reports a missing file, a missing anchor and a missing anchor in the same document, and nothing else', () => {
    // Act
    const broken = brokenLinks('README.md', read);
    // Assess
    expect(broken).toEqual([
      'README.md:11 docs/nope.md: docs/nope.md does not exist',
      'README.md:11 docs/a.md#nope: docs/a.md has no heading #nope',
      'README.md:11 #nope: README.md has no heading #nope',
    ]);
    expect(brokenLinks('docs/a.md', read)).toEqual([]);
  });
});
