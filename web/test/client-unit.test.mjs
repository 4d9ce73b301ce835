// Unit tests of the client's pure parts: the level-2 frame header (PROTOCOL.md
// §3) and incremental decoding from a byte queue. No sockets.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { tableFromArrays, tableToIPC } from 'apache-arrow';
import {
  AsyncQueue, FrameKind, VolleyError, decodeBatches, encodeFrame, parseFrameHeader,
} from '../src/client.js';

/** The example of PROTOCOL.md §3.2: stream 7, frame 3, a record batch. */
const SPEC_EXAMPLE = Uint8Array.from([0x56, 0x02, 0x03, 0x00, 0x07, 0, 0, 0, 0x03, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]);

describe('frame header', () => {
  it('parses the PROTOCOL.md §3.2 example', () => {
    const frame = parseFrameHeader(SPEC_EXAMPLE);
    assert.equal(frame.kind, FrameKind.RECORD_BATCH);
    assert.equal(frame.flags, 0);
    assert.equal(frame.streamId, 7);
    assert.equal(frame.sequence, 3);
    assert.deepEqual([...frame.payload], [0xff, 0xff, 0xff, 0xff]);
  });

  it('round-trips through encodeFrame, LAST flag included', () => {
    const payload = Uint8Array.from([1, 2, 3]);
    const frame = parseFrameHeader(encodeFrame({ kind: FrameKind.END_OF_STREAM, streamId: 0xfffffffe, sequence: 2 ** 40, last: true }, payload));
    assert.equal(frame.kind, FrameKind.END_OF_STREAM);
    assert.equal(frame.flags, 1);
    assert.equal(frame.streamId, 0xfffffffe);
    assert.equal(frame.sequence, 2 ** 40);
    assert.deepEqual([...frame.payload], [1, 2, 3]);
  });

  it('keeps the payload 8-byte aligned (a view at offset 16)', () => {
    const frame = parseFrameHeader(SPEC_EXAMPLE);
    assert.equal(frame.payload.byteOffset % 8, 0);
  });

  const bad = {
    'shorter than 16 bytes': SPEC_EXAMPLE.slice(0, 15),
    'wrong magic': Uint8Array.from(SPEC_EXAMPLE, (b, i) => (i === 0 ? 0x57 : b)),
    'wrong version': Uint8Array.from(SPEC_EXAMPLE, (b, i) => (i === 1 ? 1 : b)),
    'unknown kind': Uint8Array.from(SPEC_EXAMPLE, (b, i) => (i === 2 ? 5 : b)),
    'reserved flag bit': Uint8Array.from(SPEC_EXAMPLE, (b, i) => (i === 3 ? 2 : b)),
    'stream id 0': Uint8Array.from(SPEC_EXAMPLE, (b, i) => (i === 4 ? 0 : b)),
  };
  for (const [name, bytes] of Object.entries(bad)) {
    it(`rejects a frame with ${name} (bad_frame_header)`, () => {
      assert.throws(() => parseFrameHeader(bytes), (e) => e instanceof VolleyError && e.code === 'bad_frame_header');
    });
  }
});

describe('incremental decoding', () => {
  it('yields each batch as soon as its bytes are queued', async () => {
    const table = tableFromArrays({ x: Int32Array.from({ length: 300 }, (_, i) => i), y: Float64Array.from({ length: 300 }, (_, i) => i / 2) });
    const batches = [table.slice(0, 100), table.slice(100, 200), table.slice(200)].map((t) => t.batches[0]);
    const streams = batches.map((b) => tableToIPC(new (table.constructor)([b]), 'stream'));
    const queue = new AsyncQueue();
    const reader = decodeBatches(queue);
    // Whole stream of the first batch, without its EOS (8 bytes), so the reader must wait for more.
    const first = streams[0];
    queue.push(first.subarray(0, first.length - 8));
    const got = await reader.next();
    assert.equal(got.value?.numRows, 100);
    assert.equal(got.value?.getChild('x')?.get(99), 99);
    queue.close();
    const end = await reader.next();
    assert.equal(end.done, true);
  });

  it('raises the error a failed stream ends with', async () => {
    const queue = new AsyncQueue();
    const reader = decodeBatches(queue);
    queue.fail(new VolleyError('connector_gone', 'gone'));
    await assert.rejects(reader.next(), (e) => e instanceof VolleyError && e.code === 'connector_gone');
  });
});
