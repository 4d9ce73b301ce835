// The JS client's decoding of golden Arrow IPC files (shared/testdata),
// served through a real gateway: `volley demo --extra-dataset NAME=PATH`.
// Row counts and per-column checksums are compared with pyarrow's reading of
// the same files. Runs in Node with the `ws` package as WebSocket.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import WebSocket from 'ws';
import { connect } from '../src/client.js';
import { PYTHON_CHECKSUMS, assertSameChecksums, jsChecksums } from './checksums.mjs';
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
      if (q.flightInfo && q.flightInfo.records >= 0) assert.equal(q.flightInfo.records, want.rows, 'flight_info records');
      assertSameChecksums(got, want);
    });
  }
});
