// The JS client's decoding of golden Arrow IPC files (shared/testdata),
// served through a real gateway: `volley demo --extra-dataset NAME=PATH`.
// Row counts and per-column checksums are compared with pyarrow's reading of
// the same files. Runs in Node with the `ws` package as WebSocket.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { Type } from 'apache-arrow';
import WebSocket from 'ws';
import { connect } from '../src/client.js';
import { missingBinaryReason, startDemo, testdataDir } from './helpers.mjs';

const ipcDir = path.join(testdataDir, 'arrow-ipc');

/** Files apache-arrow JS 21 cannot decode (testdata/README.md), skipped by name. */
const JS_UNSUPPORTED = new Map([
  ['cpp-21.0.0/generated_list_view.stream', 'apache-arrow JS 21: Unrecognized type "ListView" (25)'],
  ['cpp-21.0.0/generated_run_end_encoded.stream', 'apache-arrow JS 21: Unrecognized type "RunEndEncoded" (22)'],
]);

function goldenFiles() {
  const files = [
    '1.0.0-littleendian/generated_primitive.stream',
    '1.0.0-littleendian/generated_primitive_large_offsets.stream',
    '0.14.1/generated_primitive.stream',
    '0.14.1/generated_dictionary.stream',
    '4.0.0-shareddict/generated_shared_dict.stream',
  ];
  const cpp = path.join(ipcDir, 'cpp-21.0.0');
  if (existsSync(cpp)) {
    for (const name of readdirSync(cpp).sort()) if (name.endsWith('.stream')) files.push(`cpp-21.0.0/${name}`);
  }
  return files;
}

/** Dataset name for a golden file: `g_<dir>_<stem>`, [a-z0-9_] only, ≤ 64 bytes. @param {string} file */
function datasetName(file) {
  const [dir, base] = file.split('/');
  return `g_${dir}_${base.replace(/\.stream$/, '')}`.toLowerCase().replace(/[^a-z0-9_]/g, '_').slice(0, 64);
}

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
const PYTHON_CHECKSUMS = String.raw`
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
function jsChecksums(schema, batches) {
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

const skip = missingBinaryReason() ?? (existsSync(ipcDir) ? null : `no golden data at ${ipcDir} (set VOLLEY_TESTDATA)`);

describe('golden Arrow IPC through the gateway, decoded by the JS client', { skip: skip ?? false }, () => {
  const files = goldenFiles().filter((f) => existsSync(path.join(ipcDir, f)));
  const served = files.filter((f) => !JS_UNSUPPORTED.has(f));
  /** @type {import('./helpers.mjs').Demo} */
  let demo;
  /** @type {import('../src/client.js').VolleyClient} */
  let client;
  /** @type {Record<string, any>} */
  let expected;

  before(async () => {
    const absolute = served.map((f) => path.join(ipcDir, f));
    expected = JSON.parse(execFileSync('python3', ['-c', PYTHON_CHECKSUMS, ...absolute], { encoding: 'utf8', maxBuffer: 64 << 20 }));
    const args = served.flatMap((f) => ['--extra-dataset', `${datasetName(f)}=${path.join(ipcDir, f)}`]);
    demo = await startDemo(args);
    client = await connect({ url: demo.base, session: demo.session, WebSocket, reconnect: false });
  });

  after(async () => {
    client?.close();
    await demo?.stop();
  });

  it('lists every extra dataset', async () => {
    const names = new Set((await client.list()).map((d) => d.name));
    const missing = served.map(datasetName).filter((n) => !names.has(n));
    assert.deepEqual(missing, [], `datasets missing from list(): ${missing.join(', ')}`);
  });

  for (const file of files) {
    const reason = JS_UNSUPPORTED.get(file);
    it(file, { skip: reason ?? false }, async () => {
      const want = expected[path.join(ipcDir, file)];
      const q = client.query(datasetName(file));
      const batches = [];
      try {
        for await (const batch of q) batches.push(batch);
      } catch (e) {
        throw new Error(`${file}: ${e}\n--- demo ---\n${demo.log().slice(-3000)}`);
      }
      assert.ok(q.schema, 'schema decoded');
      const got = jsChecksums(/** @type {any} */ (q.schema), batches);
      assert.equal(got.rows, want.rows, 'row count');
      if (q.flightInfo && q.flightInfo.records >= 0) assert.equal(q.flightInfo.records, want.rows, 'flight_info records');
      assert.deepEqual(got.columns.map((c) => c.name), want.columns.map((/** @type {any} */ c) => c.name), 'field names');
      assert.deepEqual(got.columns.map((c) => c.kind), want.columns.map((/** @type {any} */ c) => c.kind), 'column kinds');
      got.columns.forEach((column, i) => {
        const w = want.columns[i];
        if (column.kind === 'other') return;
        assert.equal(column.nulls, w.nulls, `${column.name}: nulls`);
        if (column.kind === 'float') {
          const a = Number(column.sum);
          const b = Number(w.sum);
          assert.ok(Math.abs(a - b) <= 1e-9 * Math.max(1, Math.abs(b)), `${column.name}: float sum ${a} vs ${b}`);
        } else {
          assert.equal(column.sum, w.sum, `${column.name}: checksum`);
        }
      });
    });
  }
});
