// An item's size as DynamoDB counts it against its 400 KB item limit: attribute names and
// strings in UTF-8 bytes, binaries in raw bytes, numbers by their significant digits, 3 bytes
// per list or map and 1 per element
// (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/CapacityUnitCalculations.html).
// dynalite counts JavaScript string lengths (UTF-16 units): text of multi-byte characters, such
// as a trainer log's progress bars, passed locally at up to three times what DynamoDB takes.
// Plain CommonJS: the service host loads it without tsx. Items are in DynamoDB's JSON shape.

const utf8 = (s) => Buffer.byteLength(s, 'utf8');

function numberSize(n) {
  const digits = String(n).replace(/^-/, '').replace(/[eE].*$/, '').replace('.', '').replace(/^0+/, '').replace(/0+$/, '');
  return digits.length === 0 ? 1 : Math.ceil(digits.length / 2) + 1;
}

function valueSize(value) {
  const [type, v] = Object.entries(value)[0];
  switch (type) {
    case 'S':
      return utf8(v);
    case 'N':
      return numberSize(v);
    case 'B':
      return Buffer.from(v, 'base64').length;
    case 'BOOL':
    case 'NULL':
      return 1;
    case 'SS':
      return v.reduce((sum, s) => sum + utf8(s), 0);
    case 'NS':
      return v.reduce((sum, n) => sum + numberSize(n), 0);
    case 'BS':
      return v.reduce((sum, b) => sum + Buffer.from(b, 'base64').length, 0);
    case 'L':
      return 3 + v.reduce((sum, e) => sum + 1 + valueSize(e), 0);
    case 'M':
      return 3 + Object.entries(v).reduce((sum, [name, e]) => sum + 1 + utf8(name) + valueSize(e), 0);
    default:
      throw new Error(`unknown DynamoDB type ${type}`);
  }
}

/** The item's size in bytes: each attribute's name and value. */
function itemSize(item) {
  return Object.entries(item).reduce((sum, [name, value]) => sum + utf8(name) + valueSize(value), 0);
}

module.exports = { itemSize };
