// Unit tests of the client's pure parts: the level-2 frame header (PROTOCOL.md
// §3) and incremental decoding from a byte queue. No sockets.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Table, tableFromArrays, tableToIPC } from 'apache-arrow';
import {
  AsyncQueue, FrameKind, VolleyClient, VolleyError, decodeBatches, encodeFrame, parseFrameHeader,
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

/**
 * A table's IPC stream cut into its messages: the schema message and one
 * message per record batch (what a level-2 gateway sends one per frame).
 * @param {import('apache-arrow').Table} table
 */
function ipcMessages(table) {
  const EOS_BYTES = 8;
  const schemaOnly = tableToIPC(new Table(table.schema), 'stream');
  const schema = schemaOnly.subarray(0, schemaOnly.length - EOS_BYTES);
  const batches = table.batches.map((batch) => {
    const whole = tableToIPC(new Table([batch]), 'stream');
    return whole.slice(schema.length, whole.length - EOS_BYTES);
  });
  return { schema: schema.slice(), batches };
}

/** A VolleyClient on a fake level-2 socket: messages are fed by hand, sends are recorded. */
function fakeClient() {
  const sent = [];
  class FakeSocket {
    constructor() { this.readyState = 1; }
    send(text) { sent.push(JSON.parse(text)); }
    close() {}
  }
  const client = new VolleyClient({ url: 'http://127.0.0.1:1', session: 't', WebSocket: FakeSocket, reconnect: false });
  client._ws = new FakeSocket();
  client.level = 2;
  client.state = 'open';
  const control = (/** @type {object} */ msg) => client._onControl(msg);
  const frame = (/** @type {number} */ streamId, /** @type {number} */ sequence, /** @type {number} */ kind, /** @type {Uint8Array} */ payload) =>
    client._onBinary(encodeFrame({ kind, streamId, sequence }, payload));
  return { client, sent, control, frame };
}

const settle = () => new Promise((resolve) => setTimeout(resolve, 20));

describe('a query that waits for a stream slot (queued, PROTOCOL.md §5.1)', () => {
  it('records its place in line, tells listeners, and then runs as any query', async () => {
    const { client, control, frame } = fakeClient();
    /** @type {any[]} */
    const told = [];
    client.on('queued', (info) => told.push(info));
    const q = client.query('ventas', { queryId: 'q9' });
    await settle();
    control({ type: 'queued', query_id: 'q9', dataset: 'ventas', position: 3 });
    assert.equal(q.queuedPosition, 3);
    assert.deepEqual(told, [{ queryId: 'q9', dataset: 'ventas', position: 3 }]);
    assert.equal(q.done, false, 'waiting is not an end');
    const table = ipcMessages(tableFromArrays({ v: Int32Array.from([1, 2, 3]) }));
    control({ type: 'stream_start', query_id: 'q9', stream_id: 4, live: false });
    assert.equal(q.queuedPosition, null, 'started: no longer in line');
    frame(4, 0, FrameKind.SCHEMA, table.schema);
    frame(4, 1, FrameKind.RECORD_BATCH, table.batches[0]);
    control({ type: 'stream_end', query_id: 'q9', stream_id: 4, total_bytes: 0 });
    let rows = 0;
    for await (const batch of q) rows += batch.numRows;
    assert.equal(rows, 3);
    client.close();
  });
});

describe('live subscription that resumes (live_waiting, then a new stream_start)', () => {
  it('keeps the subscription while waiting and decodes the new stream with a fresh reader', async () => {
    const { client, sent, control, frame } = fakeClient();
    /** @type {string[]} */
    const events = [];
    const sub = client.subscribe('ticker', (batch) => {
      events.push(`batch ${batch.schema.fields.map((f) => f.name).join(',')} ${batch.numRows}`);
    }, {
      queryId: 's1',
      onSchema: (schema) => events.push(`schema ${schema.fields.map((f) => f.name).join(',')}`),
      onWaiting: ({ error }) => events.push(`waiting ${error.code}`),
      onRestart: () => events.push('restart'),
      onError: (error) => events.push(`error ${error.code}`),
    });
    await settle();
    assert.deepEqual(sent.at(-1), { action: 'subscribe', dataset: 'ticker', query_id: 's1', compression: client.codecs });

    // First stream: price as a float, two batches.
    const first = ipcMessages(new Table([
      tableFromArrays({ price: Float64Array.from([1, 2, 3]) }).batches[0],
      tableFromArrays({ price: Float64Array.from([4, 5]) }).batches[0],
    ]));
    control({ type: 'stream_start', query_id: 's1', stream_id: 9, live: true });
    frame(9, 0, FrameKind.SCHEMA, first.schema);
    frame(9, 1, FrameKind.RECORD_BATCH, first.batches[0]);
    // The second batch is cut off mid-message when the connector dies.
    frame(9, 2, FrameKind.RECORD_BATCH, first.batches[1].subarray(0, 24));
    await settle();
    control({ type: 'live_waiting', query_id: 's1', stream_id: 9, dataset: 'ticker', error: { code: 'connector_gone', message: 'gone' } });
    await settle();
    assert.equal(sub.done, false, 'the subscription stays open while waiting');
    assert.equal(sub.waiting, true);
    // A late frame of the old stream is dropped.
    frame(9, 3, FrameKind.RECORD_BATCH, first.batches[1]);

    // The connector is back: a new stream, another schema (a new column), its window.
    const second = ipcMessages(tableFromArrays({ price: Float64Array.from([7, 8, 9, 10]), volume: Int32Array.from([1, 2, 3, 4]) }));
    control({ type: 'stream_start', query_id: 's1', stream_id: 12, live: true });
    assert.equal(sub.waiting, false);
    assert.equal(sub.restarts, 1);
    frame(12, 0, FrameKind.SCHEMA, second.schema);
    frame(12, 1, FrameKind.RECORD_BATCH, second.batches[0]);
    await settle();
    assert.deepEqual(events, [
      'schema price', 'batch price 3', 'waiting connector_gone',
      'restart', 'schema price,volume', 'batch price,volume 4',
    ]);

    // Unsubscribing while it runs (or waits) is answered `unsubscribed`.
    sub.unsubscribe();
    assert.deepEqual(sent.at(-1), { action: 'unsubscribe', query_id: 's1' });
    assert.equal(sub.done, true);
    client.close();
  });

  it('ends with not_live when the dataset comes back without being live', async () => {
    const { client, control } = fakeClient();
    /** @type {string[]} */
    const codes = [];
    const sub = client.subscribe('ticker', () => {}, { queryId: 's2', onError: (e, s) => codes.push(`${e.code}${s.done ? ' done' : ''}`) });
    await settle();
    control({ type: 'stream_start', query_id: 's2', stream_id: 3, live: true });
    control({ type: 'live_waiting', query_id: 's2', stream_id: 3, dataset: 'ticker', error: { code: 'connector_gone', message: 'gone' } });
    control({ type: 'error', code: 'not_live', query_id: 's2', message: '"ticker" is not live' });
    await settle();
    assert.equal(sub.done, true);
    assert.deepEqual(codes, ['not_live done']);
    client.close();
  });

  it('a live stream that fails (stream_end with an error) ends the subscription', async () => {
    const { client, control } = fakeClient();
    /** @type {string[]} */
    const codes = [];
    const sub = client.subscribe('ticker', () => {}, { queryId: 's4', onError: (e, s) => codes.push(`${e.code}${s.done ? ' done' : ''}`) });
    await settle();
    control({ type: 'stream_start', query_id: 's4', stream_id: 5, live: true });
    control({ type: 'stream_end', query_id: 's4', stream_id: 5, total_bytes: 0, error: { code: 'source_error', message: 'x' } });
    await settle();
    assert.equal(sub.done, true);
    assert.deepEqual(codes, ['source_error done']);
    client.close();
  });

  it('a stream_start after the client\'s own reconnect restarts decoding too', async () => {
    const { client, control, frame } = fakeClient();
    let restarts = 0;
    let rows = 0;
    client.subscribe('ticker', (batch) => (rows += batch.numRows), { queryId: 's3', onRestart: () => (restarts += 1) });
    await settle();
    const stream = ipcMessages(tableFromArrays({ x: Int32Array.from([1, 2]) }));
    control({ type: 'stream_start', query_id: 's3', stream_id: 1 });
    frame(1, 0, FrameKind.SCHEMA, stream.schema);
    frame(1, 1, FrameKind.RECORD_BATCH, stream.batches[0]);
    await settle();
    for (const handler of client._handlers.values()) handler._onDisconnect(new VolleyError('connection_lost', 'lost'));
    control({ type: 'stream_start', query_id: 's3', stream_id: 1 });
    frame(1, 0, FrameKind.SCHEMA, stream.schema);
    frame(1, 1, FrameKind.RECORD_BATCH, stream.batches[0]);
    await settle();
    assert.equal(restarts, 1);
    assert.equal(rows, 4);
    client.close();
  });

  it('a re-subscribe after a reconnect that finds no connector yet waits and asks again (a restarted gateway)', async () => {
    const { client, sent, control } = fakeClient();
    client.options.resubscribeFirstRetryMs = 30;
    client.options.resubscribeRetryMs = 30;
    /** @type {string[]} */
    const events = [];
    const sub = client.subscribe('ticker', () => {}, {
      queryId: 's5',
      onWaiting: ({ error }) => events.push(`waiting ${error.code}`),
      onError: (e, s) => events.push(`error ${e.code}${s.done ? ' done' : ''}`),
    });
    await settle();
    control({ type: 'stream_start', query_id: 's5', stream_id: 2, live: true });
    for (const handler of client._handlers.values()) handler._onDisconnect(new VolleyError('connection_lost', 'lost'));
    // What the client does after it reconnected.
    await sub._resubscribe();
    const subscribes = () => sent.filter((m) => m.action === 'subscribe').length;
    assert.equal(subscribes(), 2);
    control({ type: 'error', code: 'dataset_not_found', query_id: 's5', message: 'no connector lists "ticker"' });
    assert.equal(sub.done, false, 'the subscription waits for the connector');
    assert.equal(sub.waiting, true);
    await waitUntil(() => subscribes() === 3, 'asked again after resubscribeFirstRetryMs');
    control({ type: 'error', code: 'connector_offline', query_id: 's5', message: 'offline' });
    // The dataset is listed again: asked at once, not at the timer.
    client.options.resubscribeRetryMs = 60_000;
    control({ type: 'error', code: 'connector_offline', query_id: 's5', message: 'offline' });
    control({ type: 'datasets_changed', datasets: [{ name: 'ticker', live: true }] });
    await settle();
    assert.equal(subscribes(), 4);
    control({ type: 'stream_start', query_id: 's5', stream_id: 3, live: true });
    assert.equal(sub.waiting, false);
    assert.deepEqual(events, ['error connection_lost', 'waiting dataset_not_found']);
    // A first subscribe to a missing dataset still fails at once.
    const other = client.subscribe('nope', () => {}, { queryId: 's6' });
    await settle();
    control({ type: 'error', code: 'dataset_not_found', query_id: 's6', message: 'x' });
    assert.equal(other.done, true);
    client.close();
  });
});

/** @param {() => boolean} check @param {string} what */
async function waitUntil(check, what) {
  const deadline = Date.now() + 2_000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}
