// Crash recovery for dynalite's secondary indexes. DynamoDB writes an item and its index entries
// at once; dynalite writes the index entries first and the item after, in separate LevelDB
// writes. Local mode killed between the two (SIGKILL, a crash, power) left an index entry with no
// item, or an item with a stale entry: a list then showed one version twice. So the store is
// marked open while it runs (`<path>.open`, removed on a clean close), and a store that was not
// closed cleanly has its indexes rebuilt from its items before it serves — as a database replays
// its log after a crash. Plain CommonJS beside ../storage-host.cjs; it uses dynalite's own index
// arithmetic (db.getIndexActions), so an entry is exactly what dynalite would have written.
const { existsSync, writeFileSync, rmSync } = require('node:fs');
const db = require('dynalite/db');

const END = '\xFF';

/** Every [key, value] under prefix, in key order. */
async function* entries(level, prefix) {
  for await (const [key, value] of level.iterator({ gte: prefix, lt: prefix + END })) yield [key.slice(prefix.length), value];
}

async function keysUnder(level, prefix) {
  const keys = [];
  for await (const key of level.keys({ gte: prefix, lt: prefix + END })) keys.push(key);
  return keys;
}

/** Rebuilds one table's index entries from its items; returns how many entries changed. */
async function rebuildTable(level, table) {
  const kinds = [
    ['global', table.GlobalSecondaryIndexes || []],
    ['local', table.LocalSecondaryIndexes || []],
  ];
  const wanted = new Map();
  for await (const [, item] of entries(level, `item-${table.TableName}~`)) {
    for (const [kind, indexes] of kinds) {
      for (const put of db.getIndexActions(indexes, null, item, table).puts) {
        wanted.set(`index-${kind}~${table.TableName}~${put.index}~${put.key}`, put.item);
      }
    }
  }
  const ops = [];
  for (const [kind, indexes] of kinds) {
    for (const index of indexes) {
      for (const key of await keysUnder(level, `index-${kind}~${table.TableName}~${index.IndexName}~`)) {
        if (!wanted.has(key)) ops.push({ type: 'del', key });
      }
    }
  }
  for (const [key, value] of wanted) ops.push({ type: 'put', key, value });
  if (ops.length) await level.batch(ops);
  return ops.filter((o) => o.type === 'del').length;
}

/** Rebuilds every table's indexes; returns the number of orphaned entries removed. */
async function rebuildIndexes(level) {
  await level.open();
  let removed = 0;
  for await (const [, table] of entries(level, 'table~')) removed += await rebuildTable(level, table);
  return removed;
}

/**
 * Opens the store's crash marker: a store left marked by a run that did not close cleanly has its
 * indexes rebuilt first. Returns the function that clears the marker after a clean close.
 */
async function recoverIfUnclean(store, path) {
  const marker = `${path}.open`;
  if (existsSync(marker)) await rebuildIndexes(store.db);
  writeFileSync(marker, `${process.pid}\n`);
  return () => rmSync(marker, { force: true });
}

module.exports = { recoverIfUnclean, rebuildIndexes };
