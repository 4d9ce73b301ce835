// Column checksums computed the same way by pyarrow (a Python script the
// tests run) and by the JS client's decoded batches, so the two readers can
// be compared without either trusting the other.
import assert from 'node:assert/strict';
import { Type } from 'apache-arrow';

/*
 * The checksum, computed the same way on both sides, value by value in row order:
 *   int*:    nulls, sum of values (exact, as a decimal string)
 *   float*:  nulls, sum of finite values as float64 (compared with a relative tolerance)
 *   bool:    nulls, number of true values
 *   utf8*:   nulls, total UTF-8 bytes
 *   binary*: nulls, total bytes
 *   dictionary: the same, over the decoded values; extension: its storage type
 *   others:  only the field name (nested, temporal, decimal, union … types are
 *            covered by the row count and by decoding without error)
 */
export const PYTHON_CHECKSUMS = String.raw`
import json, math, sys
import pyarrow as pa, pyarrow.ipc as ipc
def kind(t):
    if isinstance(t, pa.BaseExtensionType): return kind(t.storage_type)
    if pa.types.is_dictionary(t): return kind(t.value_type)
    if pa.types.is_integer(t): return 'int'
    if pa.types.is_floating(t): return 'float'
    if pa.types.is_boolean(t): return 'bool'
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t): return 'utf8'
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t) or pa.types.is_binary_view(t): return 'binary'
    return 'other'
out = {}
for path in sys.argv[1:]:
    reader = ipc.open_stream(path)
    table = reader.read_all()
    cols = []
    for i, field in enumerate(table.schema):
        k = kind(field.type)
        c = {'name': field.name, 'kind': k}
        if k != 'other':
            nulls = 0; s = 0; f = 0.0
            col = table.column(i)
            if isinstance(col.type, pa.BaseExtensionType):
                # compare the storage values (JS sees the storage type)
                col = pa.chunked_array([chunk.storage for chunk in col.chunks], type=col.type.storage_type)
            for v in col.to_pylist():
                if v is None: nulls += 1; continue
                if k == 'int': s += int(v)
                elif k == 'float':
                    v = float(v)
                    if math.isfinite(v): f += v
                elif k == 'bool': s += 1 if v else 0
                elif k == 'utf8': s += len(v.encode('utf-8'))
                else: s += len(v)
            c['nulls'] = nulls
            c['sum'] = repr(f) if k == 'float' else str(s)
        cols.append(c)
    out[path] = {'rows': table.num_rows, 'columns': cols}
print(json.dumps(out))
`;

/** @param {import('apache-arrow').DataType} type @returns {string} */
function kindOf(type) {
  switch (type.typeId) {
    case Type.Dictionary: return kindOf(/** @type {any} */ (type).dictionary);
    case Type.Int: return 'int';
    case Type.Float: return 'float';
    case Type.Bool: return 'bool';
    case Type.Utf8: case Type.LargeUtf8: case Type.Utf8View: return 'utf8';
    case Type.Binary: case Type.LargeBinary: case Type.FixedSizeBinary: case Type.BinaryView: return 'binary';
    default: return 'other';
  }
}

const utf8 = new TextEncoder();

/**
 * @param {import('apache-arrow').Schema} schema
 * @param {import('apache-arrow').RecordBatch[]} batches
 */
export function jsChecksums(schema, batches) {
  const columns = schema.fields.map((field, index) => {
    const kind = kindOf(field.type);
    /** @type {{name: string, kind: string, nulls?: number, sum?: string}} */
    const column = { name: field.name, kind };
    if (kind === 'other') return column;
    let nulls = 0;
    let sum = 0n;
    let fsum = 0;
    for (const batch of batches) {
      const vector = batch.getChildAt(index);
      for (let r = 0; r < batch.numRows; r += 1) {
        const v = vector?.get(r);
        if (v === null || v === undefined) {
          nulls += 1;
          continue;
        }
        if (kind === 'int') sum += BigInt(v);
        else if (kind === 'float') { if (Number.isFinite(v)) fsum += v; }
        else if (kind === 'bool') sum += v ? 1n : 0n;
        else if (kind === 'utf8') sum += BigInt(utf8.encode(v).length);
        else sum += BigInt(v.length);
      }
    }
    column.nulls = nulls;
    column.sum = kind === 'float' ? String(fsum) : sum.toString();
    return column;
  });
  return { rows: batches.reduce((n, b) => n + b.numRows, 0), columns };
}

/**
 * Asserts two checksum records (from {@link jsChecksums} or
 * {@link PYTHON_CHECKSUMS}) describe the same table.
 * @param {{rows: number, columns: any[]}} got
 * @param {{rows: number, columns: any[]}} want
 * @param {string} [label]
 */
export function assertSameChecksums(got, want, label = '') {
  const at = label ? `${label}: ` : '';
  assert.equal(got.rows, want.rows, `${at}row count`);
  assert.deepEqual(got.columns.map((c) => c.name), want.columns.map((c) => c.name), `${at}field names`);
  assert.deepEqual(got.columns.map((c) => c.kind), want.columns.map((c) => c.kind), `${at}column kinds`);
  got.columns.forEach((column, i) => {
    const w = want.columns[i];
    if (column.kind === 'other') return;
    assert.equal(column.nulls, w.nulls, `${at}${column.name}: nulls`);
    if (column.kind === 'float') {
      const a = Number(column.sum);
      const b = Number(w.sum);
      assert.ok(Math.abs(a - b) <= 1e-9 * Math.max(1, Math.abs(b)), `${at}${column.name}: float sum ${a} vs ${b}`);
    } else {
      assert.equal(column.sum, w.sum, `${at}${column.name}: checksum`);
    }
  });
}
