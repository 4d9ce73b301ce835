// IPC body compression in the JS client (PROTOCOL.md §5.4).
//
// 1. The decoders the client registers (fzstd for ZSTD, lz4js for LZ4_FRAME)
//    read the compressed golden streams written by Arrow C++
//    (testdata/arrow-ipc/2.0.0-compression) as pyarrow reads them; a frame
//    that declares an absurd decompressed size is refused before allocating.
// 2. Through a real gateway that compresses (`volley demo --compression
//    zstd,lz4`, whose connector is the real one, encoding with arrow-rs):
//    a default client gets zstd, an lz4-only client lz4, a client that
//    accepts nothing an uncompressed stream — all three the same table; and
//    a zstd and an uncompressed subscriber follow the same live dataset.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { CompressionType, Table, compressionRegistry } from 'apache-arrow';
import WebSocket from 'ws';
import { AsyncQueue, CODECS, VolleyError, connect, decodeBatches, registerCodecs } from '../src/client.js';
import { PYTHON_CHECKSUMS, assertSameChecksums, jsChecksums } from './checksums.mjs';
import { missingBinaryReason, startDemo, testdataDir, waitFor } from './helpers.mjs';

const compressedDir = path.join(testdataDir, 'arrow-ipc', '2.0.0-compression');
const GOLDEN = [
  'generated_lz4.stream',
  'generated_zstd.stream',
  'generated_uncompressible_lz4.stream',
  'generated_uncompressible_zstd.stream',
];

/** Decode one whole IPC stream (given as bytes) with the client's decoder. @param {Uint8Array} bytes */
async function decodeAll(bytes) {
  const queue = new AsyncQueue();
  queue.push(bytes);
  queue.close();
  /** @type {import('apache-arrow').Schema|null} */
  let schema = null;
  const batches = [];
  for await (const batch of decodeBatches(queue, (s) => (schema = s))) batches.push(batch);
  return { schema, batches };
}

describe('compression codecs', () => {
  it('registers every codec it names, and refuses unknown names', () => {
    assert.deepEqual(registerCodecs(), [...CODECS]);
    assert.deepEqual(registerCodecs(['lz4', 'lz4']), ['lz4']);
    assert.throws(() => registerCodecs(['brotli']), (e) => e instanceof VolleyError && e.code === 'bad_request');
  });

  it('refuses frames that declare more than decompressedBufferBytesMax, or that lz4js would misread', () => {
    registerCodecs(CODECS);
    const decode = (/** @type {number} */ type, /** @type {number[]} */ bytes) => () =>
      compressionRegistry.get(type)?.decode?.(Uint8Array.from(bytes));
    const refused = (/** @type {unknown} */ e) => e instanceof VolleyError && e.code === 'decode_error';
    // LZ4: magic, FLG (version 01, content size), BD, content size 2^40, header checksum, end mark.
    assert.throws(decode(CompressionType.LZ4_FRAME, [0x04, 0x22, 0x4d, 0x18, 0x48, 0x40, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]), refused);
    // LZ4: 4 MiB blocks, one compressed block of 16 bytes repeated until past the bound.
    const block = [0x10, 0, 0, 0, ...new Array(16).fill(0)];
    const many = [0x04, 0x22, 0x4d, 0x18, 0x40, 0x70, 0, ...Array.from({ length: 70 }, () => block).flat(), 0, 0, 0, 0];
    assert.throws(decode(CompressionType.LZ4_FRAME, many), refused);
    // LZ4: block checksums (lz4js reads them before the block, not after).
    assert.throws(decode(CompressionType.LZ4_FRAME, [0x04, 0x22, 0x4d, 0x18, 0x50, 0x40, 0, 0, 0, 0, 0]), refused);
    // ZSTD: magic, single-segment descriptor with an 8-byte content size of 2^40.
    assert.throws(decode(CompressionType.ZSTD, [0x28, 0xb5, 0x2f, 0xfd, 0xe0, 0, 0, 0, 0, 0, 1, 0, 0]), refused);
  });

  const skip = existsSync(compressedDir) ? false : `no golden data at ${compressedDir} (set VOLLEY_TESTDATA)`;
  it('decodes the Arrow C++ compressed golden streams as pyarrow does', { skip }, async () => {
    registerCodecs(CODECS);
    const files = GOLDEN.map((f) => path.join(compressedDir, f));
    const expected = JSON.parse(execFileSync('python3', ['-c', PYTHON_CHECKSUMS, ...files], { encoding: 'utf8' }));
    for (const file of files) {
      const { schema, batches } = await decodeAll(new Uint8Array(readFileSync(file)));
      assert.ok(schema, `${file}: schema`);
      assertSameChecksums(jsChecksums(schema, batches), expected[file], path.basename(file));
    }
  });
});

/** Read a whole query into its batches, with the stream's announced codec. */
async function readQuery(/** @type {import('../src/client.js').VolleyClient} */ client, /** @type {string} */ dataset) {
  const q = client.query(dataset);
  const batches = [];
  for await (const batch of q) batches.push(batch);
  return { q, batches };
}

const skipGateway = missingBinaryReason();

describe('compressed streams through a real gateway and connector', { skip: skipGateway ?? false }, () => {
  /** @type {import('./helpers.mjs').Demo} */
  let demo;
  /** @type {Record<string, import('../src/client.js').VolleyClient>} */
  const clients = {};

  before(async () => {
    demo = await startDemo(['--compression', 'zstd,lz4']);
    const open = (/** @type {string[]|undefined} */ compression) =>
      connect({ url: demo.base, session: demo.session, WebSocket, reconnect: false, compression });
    clients.zstd = await open(undefined); // default: every codec the client has
    clients.lz4 = await open(['lz4']);
    clients.plain = await open([]);
  });

  after(async () => {
    for (const client of Object.values(clients)) client.close();
    await demo?.stop();
  });

  it('gives each client a codec it accepted, and the same table', async () => {
    const results = {};
    for (const [name, client] of Object.entries(clients)) results[name] = await readQuery(client, 'ventas');
    assert.equal(results.zstd.q.compression, 'zstd', 'the default client accepts zstd, the gateway prefers it');
    assert.equal(results.lz4.q.compression, 'lz4');
    assert.equal(results.plain.q.compression, null);
    const want = jsChecksums(/** @type {any} */ (results.plain.q.schema), results.plain.batches);
    assert.equal(want.rows, demo.datasetRows.get('ventas'), 'every row of ventas');
    for (const name of ['zstd', 'lz4']) {
      const { q, batches } = results[name];
      assertSameChecksums(jsChecksums(/** @type {any} */ (q.schema), batches), want, name);
      assert.ok(q.bytesReceived < results.plain.q.bytesReceived, `${name}: ${q.bytesReceived} bytes, uncompressed ${results.plain.q.bytesReceived}`);
      // The same values, not only the same checksums.
      assert.deepEqual(new Table(batches).toArray().slice(0, 50).map(String), new Table(results.plain.batches).toArray().slice(0, 50).map(String));
    }
  });

  it('keeps a zstd and an uncompressed subscriber of the same live dataset apart', async () => {
    /** @type {Record<string, {rows: number, errors: string[], sub: import('../src/client.js').Subscription}>} */
    const seen = {};
    for (const name of ['zstd', 'plain']) {
      const entry = { rows: 0, errors: /** @type {string[]} */ ([]), sub: /** @type {any} */ (null) };
      entry.sub = clients[name].subscribe('ticker', (batch) => (entry.rows += batch.numRows), {
        onError: (e) => entry.errors.push(`${e.code}: ${e.message}`),
      });
      seen[name] = entry;
    }
    await waitFor(() => seen.zstd.rows > 20 && seen.plain.rows > 20, { timeoutMs: 20_000, what: 'live rows on both' });
    assert.equal(seen.zstd.sub.compression, 'zstd');
    assert.equal(seen.plain.sub.compression, null);
    assert.notEqual(seen.zstd.sub.streamId, seen.plain.sub.streamId, 'one upstream stream per codec');
    assert.deepEqual([...seen.zstd.errors, ...seen.plain.errors], []);
    for (const { sub } of Object.values(seen)) sub.unsubscribe();
  });
});
