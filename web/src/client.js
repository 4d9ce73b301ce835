// @ts-check
/**
 * The `volley` JS client: talks the Volley wire protocol (protocol/PROTOCOL.md)
 * to a gateway over one WebSocket and decodes Arrow IPC with apache-arrow JS.
 *
 * Data path: binary frame → {@link parseFrameHeader} (level 2) → the stream's
 * {@link AsyncQueue} of payload bytes (header stripped, sequence order) →
 * `RecordBatchReader.from(queue)` → RecordBatches, decoded incrementally as
 * frames arrive. Control messages are JSON text frames routed by `query_id`.
 *
 * Works in browsers and in Node (pass `WebSocket` from the `ws` package; Node
 * 20 has no stable global WebSocket).
 *
 * Compressed streams (PROTOCOL.md §5.4): apache-arrow JS 21 decompresses IPC
 * bodies through its process-wide `compressionRegistry` but ships no codec.
 * {@link registerCodecs} registers `fzstd` (ZSTD) and `lz4js` (LZ4_FRAME)
 * decoders there, and the client names the codecs it can decode in every
 * `query`/`subscribe`; the gateway picks one (or none) per stream.
 *
 * @module volley
 */
import { CompressionType, RecordBatchReader, compressionRegistry } from 'apache-arrow';
import { decompress as zstdDecompress } from 'fzstd';
import lz4js from 'lz4js';

/**
 * A `datasets` / `datasets_changed` list as `{name, live}` objects (a seed
 * gateway may send bare names).
 * @param {unknown} list
 * @returns {{name: string, live: boolean}[]}
 */
function datasetList(list) {
  return Array.isArray(list)
    ? list.map((/** @type {any} */ d) => (typeof d === 'string' ? { name: d, live: false } : { name: String(d.name), live: Boolean(d.live) }))
    : [];
}

/** Level-2 frame header size in bytes (PROTOCOL.md §3). */
export const FRAME_HEADER_BYTES = 16;
/** First header byte, `'V'`. */
export const FRAME_MAGIC = 0x56;
/** Second header byte: the header version. */
export const FRAME_VERSION = 2;
/** Flag bit 0: last data frame of the stream. */
export const FRAME_FLAG_LAST = 0x01;
/** The WebSocket subprotocol that selects level 2. */
export const SUBPROTOCOL_V2 = 'volley.v2';

/** Frame kinds (PROTOCOL.md §3.1). */
export const FrameKind = Object.freeze({
  CHUNK: 0,
  SCHEMA: 1,
  DICTIONARY: 2,
  RECORD_BATCH: 3,
  END_OF_STREAM: 4,
});

/**
 * WebSocket close codes (PROTOCOL.md §9) mapped to the error code the client
 * reports. 1008 is refined by the close reason when it names a known code.
 * @type {Readonly<Record<number, string>>}
 */
export const CLOSE_CODE_ERRORS = Object.freeze({
  1001: 'going_away',
  1002: 'protocol_error',
  1003: 'unsupported_data',
  1006: 'connection_lost',
  1007: 'invalid_payload',
  1008: 'unauthorized',
  1009: 'message_too_big',
  1011: 'internal',
  4000: 'revoked',
  4001: 'token_expired',
  4002: 'slow_consumer',
  4003: 'heartbeat_timeout',
  4004: 'connector_replaced',
  4008: 'idle_timeout',
});

/**
 * IPC body compression codecs this client can decode, by wire name
 * (PROTOCOL.md §5.4). The gateway's configuration decides which one a stream
 * gets; the order here does not matter.
 */
export const CODECS = Object.freeze(['zstd', 'lz4']);

/**
 * Largest decompressed IPC buffer the registered decoders produce, bytes.
 * A Volley connector cuts record batches at `max_chunk_size` (1 MiB by
 * default, 16 MiB at most) before compressing, so no honest buffer comes
 * near this; the bound keeps a corrupt or hostile frame header from making
 * the page allocate gigabytes. Change it with {@link registerCodecs}.
 */
export const DECOMPRESSED_BUFFER_BYTES_MAX = 256 * 1024 * 1024;

/** Arrow's buffers must start 8-byte aligned for zero-copy typed arrays. @param {Uint8Array} bytes */
function aligned(bytes) {
  return bytes.byteOffset % 8 === 0 ? bytes : bytes.slice();
}

const codecLimits = { decompressedBufferBytesMax: DECOMPRESSED_BUFFER_BYTES_MAX };

/** @param {number} bytes @param {string} codec */
function checkDecompressedBytes(bytes, codec) {
  if (!(bytes <= codecLimits.decompressedBufferBytesMax)) {
    throw new VolleyError('decode_error', `${codec}: a buffer declares ${bytes} decompressed bytes, more than ${codecLimits.decompressedBufferBytesMax}`);
  }
}

/** The Frame_Content_Size of a Zstandard frame header, or -1 when absent. @param {Uint8Array} data */
function zstdContentSize(data) {
  if (data.byteLength < 6) return -1;
  const descriptor = data[4];
  const sizeFlag = descriptor >> 6;
  const singleSegment = (descriptor >> 5) & 1;
  const dictionaryIdBytes = [0, 1, 2, 4][descriptor & 3];
  const at = 5 + (singleSegment ? 0 : 1) + dictionaryIdBytes;
  const sizeBytes = [singleSegment ? 1 : 0, 2, 4, 8][sizeFlag];
  if (sizeBytes === 0 || data.byteLength < at + sizeBytes) return -1;
  const view = new DataView(data.buffer, data.byteOffset + at, sizeBytes);
  if (sizeBytes === 1) return view.getUint8(0);
  if (sizeBytes === 2) return view.getUint16(0, true) + 256;
  if (sizeBytes === 4) return view.getUint32(0, true);
  return Number(view.getBigUint64(0, true));
}

/** LZ4 frame block sizes by the block-maximum-size field of the BD byte. */
const LZ4_BLOCK_BYTES_MAX = [0, 0, 0, 0, 64 << 10, 256 << 10, 1 << 20, 4 << 20];

/**
 * Checks an LZ4 frame's header and block headers (LZ4 frame format 1.6)
 * and returns the most bytes it can decode to: its declared content size,
 * else the sum of its blocks' bounds. Refuses what lz4js would decode wrong
 * (dictionary ids, block checksums, content sizes of 2^31 bytes or more —
 * it reads them with 32-bit shifts) and anything over
 * `decompressedBufferBytesMax`.
 * @param {Uint8Array} data
 * @returns {number}
 */
function lz4FrameBound(data) {
  const fail = (/** @type {string} */ why) => new VolleyError('decode_error', `lz4: ${why}`);
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  if (data.byteLength < 7 || view.getUint32(0, true) !== 0x184d2204) throw fail('not an LZ4 frame');
  const flags = data[4];
  if ((flags & 0xc0) !== 0x40) throw fail(`unsupported frame version ${flags >> 6}`);
  if (flags & 0x11) throw fail('block checksums and dictionary ids are not supported');
  const blockMax = LZ4_BLOCK_BYTES_MAX[(data[5] >> 4) & 7];
  if (!blockMax) throw fail('invalid block maximum size');
  if (flags & 0x08) {
    if (data.byteLength < 15) throw fail('truncated frame header');
    const declared = Number(view.getBigUint64(6, true));
    checkDecompressedBytes(declared, 'lz4');
    return declared;
  }
  let at = 7;
  let total = 0;
  for (;;) {
    if (at + 4 > data.byteLength) throw fail('truncated block header');
    const header = view.getUint32(at, true);
    at += 4;
    if (header === 0) return total;
    const size = header & 0x7fffffff;
    total += header & 0x80000000 ? size : blockMax;
    checkDecompressedBytes(total, 'lz4');
    at += size;
  }
}

/** Decoders by wire name: the apache-arrow compression type and a `decode`. */
const DECODERS = Object.freeze({
  zstd: {
    type: CompressionType.ZSTD,
    /** @param {Uint8Array} data */
    decode(data) {
      checkDecompressedBytes(zstdContentSize(data), 'zstd');
      const out = zstdDecompress(data);
      checkDecompressedBytes(out.byteLength, 'zstd');
      return aligned(out);
    },
  },
  lz4: {
    type: CompressionType.LZ4_FRAME,
    /** @param {Uint8Array} data */
    decode(data) {
      const bound = lz4FrameBound(data);
      // lz4js decodes the blocks into a buffer of the size it is given.
      const out = lz4js.decompress(data, bound);
      if (out.byteLength > bound) throw new VolleyError('decode_error', 'lz4: a frame decoded to more bytes than it declares');
      return aligned(out);
    },
  },
});

/**
 * Register IPC body decoders for `names` in apache-arrow's process-wide
 * `compressionRegistry`, except where the page registered a decoder of its
 * own (that one is kept). Unknown names throw.
 * @param {readonly string[]} [names]  default: every codec in {@link CODECS}
 * @param {{decompressedBufferBytesMax?: number}} [limits]  process-wide, like the registry
 * @returns {string[]} the names of `names` that can now be decoded
 */
export function registerCodecs(names = CODECS, limits = {}) {
  if (limits.decompressedBufferBytesMax !== undefined) {
    codecLimits.decompressedBufferBytesMax = limits.decompressedBufferBytesMax;
  }
  const usable = [];
  for (const name of names) {
    const decoder = DECODERS[/** @type {keyof typeof DECODERS} */ (name)];
    if (!decoder) throw new VolleyError('bad_request', `unknown compression codec ${JSON.stringify(name)} (known: ${CODECS.join(', ')})`);
    const existing = compressionRegistry.get(decoder.type);
    if (typeof existing?.decode !== 'function') compressionRegistry.set(decoder.type, { decode: decoder.decode });
    if (!usable.includes(name)) usable.push(name);
  }
  return usable;
}

/** Error codes after which reconnecting with the same session cannot help. */
const FATAL_CODES = new Set(['unauthorized', 'forbidden', 'token_expired', 'revoked']);

/** Error codes of PROTOCOL.md §8 (used to recognise a code in a close reason). */
const PROTOCOL_CODES = new Set([
  'invalid_json', 'bad_request', 'unknown_action', 'unauthorized', 'token_expired',
  'forbidden', 'revoked', 'dataset_not_found', 'dataset_forbidden', 'not_live',
  'connector_offline', 'connector_gone', 'query_timeout', 'cancelled', 'busy',
  'too_many_requests', 'unknown_query', 'unknown_stream', 'bad_frame_header',
  'source_error', 'slow_consumer', 'retained_limit', 'internal',
]);

/** Defaults; every one can be overridden in {@link connect} options. */
export const DEFAULTS = Object.freeze({
  /** Interval of the application-level `ping` (PROTOCOL.md §7 heartbeat_seconds). */
  heartbeatMs: 15_000,
  /** Silent heartbeat intervals tolerated before the socket is dropped (heartbeat_misses_max). */
  heartbeatMissesMax: 3,
  /** How long to wait for `hello` on a level-2 socket before going on without it. */
  helloTimeoutMs: 5_000,
  /** How long one connection attempt may take (upgrade) before it counts as failed. */
  connectTimeoutMs: 10_000,
  /** First reconnect delay; doubles per failed attempt up to `reconnectDelayMaxMs`. */
  reconnectDelayInitialMs: 250,
  reconnectDelayMaxMs: 10_000,
  /** Consecutive failed reconnect attempts before the client gives up. */
  reconnectAttemptsMax: 100,
  /**
   * A live subscription re-sent after a reconnect that the gateway answers
   * `dataset_not_found` / `connector_offline` (a restarted gateway whose
   * connectors have not registered again yet) waits and asks again after
   * this long, then every `resubscribeRetryMs`, and at once when a
   * `datasets_changed` lists the dataset.
   */
  resubscribeFirstRetryMs: 1_000,
  resubscribeRetryMs: 2_000,
});

/**
 * Codes a re-sent subscription is answered with while the gateway has no
 * connector serving the dataset yet: the subscription waits (as after
 * `live_waiting`) instead of ending.
 */
const RESUBSCRIBE_WAIT_CODES = new Set(['dataset_not_found', 'connector_offline']);

/**
 * An error with a protocol error code (PROTOCOL.md §8) or a client-side code
 * (`connection_lost`, `bad_sequence`, `decode_error`, `closed`, …).
 */
export class VolleyError extends Error {
  /**
   * @param {string} code
   * @param {string} message
   * @param {{closeCode?: number, queryId?: string}} [extra]
   */
  constructor(code, message, extra = {}) {
    super(message || code);
    this.name = 'VolleyError';
    /** @type {string} */
    this.code = code;
    /** @type {number|undefined} WebSocket close code, when the error came from a close. */
    this.closeCode = extra.closeCode;
    /** @type {string|undefined} */
    this.queryId = extra.queryId;
  }
  /** True when reconnecting with the same session cannot help. */
  get fatal() {
    return FATAL_CODES.has(this.code);
  }
}

/**
 * @typedef {object} FrameHeader
 * @property {number} kind
 * @property {number} flags
 * @property {number} streamId
 * @property {number} sequence
 * @property {Uint8Array} payload  the IPC bytes after the header (a view, no copy)
 */

/**
 * Parse a level-2 binary frame (PROTOCOL.md §3).
 * @param {Uint8Array} frame
 * @returns {FrameHeader}
 * @throws {VolleyError} code `bad_frame_header`
 */
export function parseFrameHeader(frame) {
  if (frame.byteLength < FRAME_HEADER_BYTES) {
    throw new VolleyError('bad_frame_header', `frame of ${frame.byteLength} bytes is shorter than the 16-byte header`);
  }
  const view = new DataView(frame.buffer, frame.byteOffset, FRAME_HEADER_BYTES);
  const magic = view.getUint8(0);
  const version = view.getUint8(1);
  const kind = view.getUint8(2);
  const flags = view.getUint8(3);
  if (magic !== FRAME_MAGIC) throw new VolleyError('bad_frame_header', `bad magic 0x${magic.toString(16)}`);
  if (version !== FRAME_VERSION) throw new VolleyError('bad_frame_header', `unsupported header version ${version}`);
  if (kind > FrameKind.END_OF_STREAM) throw new VolleyError('bad_frame_header', `unknown frame kind ${kind}`);
  if ((flags & ~FRAME_FLAG_LAST) !== 0) throw new VolleyError('bad_frame_header', `reserved flag bits set: 0x${flags.toString(16)}`);
  const streamId = view.getUint32(4, true);
  if (streamId === 0) throw new VolleyError('bad_frame_header', 'stream_id 0');
  const sequenceBig = view.getBigUint64(8, true);
  if (sequenceBig > BigInt(Number.MAX_SAFE_INTEGER)) throw new VolleyError('bad_frame_header', 'sequence too large');
  return {
    kind,
    flags,
    streamId,
    sequence: Number(sequenceBig),
    payload: frame.subarray(FRAME_HEADER_BYTES),
  };
}

/**
 * Build a level-2 frame (used by tests and tools; the gateway builds them in production).
 * @param {{kind: number, streamId: number, sequence: number, last?: boolean}} header
 * @param {Uint8Array} payload
 * @returns {Uint8Array}
 */
export function encodeFrame({ kind, streamId, sequence, last = false }, payload) {
  const out = new Uint8Array(FRAME_HEADER_BYTES + payload.byteLength);
  const view = new DataView(out.buffer);
  view.setUint8(0, FRAME_MAGIC);
  view.setUint8(1, FRAME_VERSION);
  view.setUint8(2, kind);
  view.setUint8(3, last ? FRAME_FLAG_LAST : 0);
  view.setUint32(4, streamId, true);
  view.setBigUint64(8, BigInt(sequence), true);
  out.set(payload, FRAME_HEADER_BYTES);
  return out;
}

/**
 * An unbounded single-consumer async queue. Producers `push`; the consumer
 * iterates with `for await`. Unbounded on purpose: a WebSocket cannot be
 * paused from JS, and the gateway bounds what it sends (credit, rings), so
 * what reaches the page has already arrived in memory anyway.
 * @template T
 */
export class AsyncQueue {
  constructor() {
    /** @type {T[]} */
    this._items = [];
    /** @type {((r: IteratorResult<T>) => void) | null} */
    this._wake = null;
    /** @type {((e: unknown) => void) | null} */
    this._wakeError = null;
    this._closed = false;
    /** @type {unknown} */
    this._error = null;
  }
  /** @param {T} item */
  push(item) {
    if (this._closed) return;
    if (this._wake) {
      const wake = this._wake;
      this._wake = this._wakeError = null;
      wake({ value: item, done: false });
    } else {
      this._items.push(item);
    }
  }
  /** End the queue after the items already pushed. */
  close() {
    if (this._closed) return;
    this._closed = true;
    if (this._wake) {
      const wake = this._wake;
      this._wake = this._wakeError = null;
      wake({ value: undefined, done: true });
    }
  }
  /** End the queue with an error, raised after the items already pushed. @param {unknown} error */
  fail(error) {
    if (this._closed) return;
    this._error = error;
    this._closed = true;
    if (this._wakeError) {
      const wakeError = this._wakeError;
      this._wake = this._wakeError = null;
      wakeError(error);
    }
  }
  get closed() {
    return this._closed;
  }
  /** @returns {AsyncIterator<T>} */
  [Symbol.asyncIterator]() {
    return {
      next: () => {
        if (this._items.length > 0) {
          return Promise.resolve({ value: /** @type {T} */ (this._items.shift()), done: false });
        }
        if (this._closed) {
          if (this._error) {
            const error = this._error;
            this._error = null;
            return Promise.reject(error);
          }
          return Promise.resolve({ value: undefined, done: true });
        }
        return new Promise((resolve, reject) => {
          this._wake = resolve;
          this._wakeError = reject;
        });
      },
      return: () => {
        this._items.length = 0;
        this._closed = true;
        return Promise.resolve({ value: undefined, done: true });
      },
    };
  }
}

const EMPTY_BYTES = new Uint8Array(0);

/**
 * Work around a read-ahead in apache-arrow JS 21 (io/adapters `fromAsyncIterable`):
 * when a read consumes its buffered bytes exactly — as it does when every
 * frame holds whole IPC messages — the reader pulls the *next* chunk before
 * returning, so each batch would surface only when the following frame
 * arrives (a live batch would wait for the next one). Answering that pull
 * with an empty chunk lets the pending read complete at once; a read that
 * really needs more bytes pulls again and then waits for data.
 * @param {AsyncIterable<Uint8Array>} source
 * @returns {AsyncIterable<Uint8Array>}
 */
function eagerBytes(source) {
  return {
    [Symbol.asyncIterator]() {
      const inner = source[Symbol.asyncIterator]();
      let oweEmpty = false;
      return {
        async next() {
          if (oweEmpty) {
            oweEmpty = false;
            return { value: EMPTY_BYTES, done: false };
          }
          const result = await inner.next();
          if (!result.done) oweEmpty = true;
          return result;
        },
        async return() {
          return inner.return ? inner.return() : { value: undefined, done: true };
        },
      };
    },
  };
}

/**
 * Decode an async source of IPC byte chunks into RecordBatches, incrementally.
 * @param {AsyncIterable<Uint8Array>} bytes
 * @param {(schema: import('apache-arrow').Schema) => void} [onSchema]
 * @returns {AsyncGenerator<import('apache-arrow').RecordBatch>}
 */
export async function* decodeBatches(bytes, onSchema) {
  const reader = await RecordBatchReader.from(eagerBytes(bytes));
  await reader.open();
  if (onSchema) onSchema(reader.schema);
  for await (const batch of reader) yield batch;
}

/**
 * @typedef {object} ConnectOptions
 * @property {string} [url]  gateway base URL, http(s):// or ws(s)://; default: the page's origin
 * @property {string} session  the session token
 * @property {1|2} [protocol]  2 (default) offers `volley.v2`; 1 offers no subprotocol
 * @property {any} [WebSocket]  WebSocket constructor; default `globalThis.WebSocket`
 * @property {typeof fetch} [fetch]  fetch for `/session-check`; default `globalThis.fetch`
 * @property {boolean} [reconnect]  reconnect automatically (default true)
 * @property {number} [heartbeatMs]
 * @property {number} [heartbeatMissesMax]
 * @property {number} [helloTimeoutMs]
 * @property {number} [connectTimeoutMs]
 * @property {number} [reconnectDelayInitialMs]
 * @property {number} [reconnectDelayMaxMs]
 * @property {number} [reconnectAttemptsMax]
 * @property {number} [resubscribeFirstRetryMs]
 * @property {number} [resubscribeRetryMs]
 * @property {string[]} [compression]  IPC body codecs to accept (PROTOCOL.md §5.4); default {@link CODECS}; `[]` asks for uncompressed streams
 * @property {number} [decompressedBufferBytesMax]  see {@link DECOMPRESSED_BUFFER_BYTES_MAX}
 */

/**
 * @typedef {object} DatasetInfo
 * @property {string} name
 * @property {boolean} live
 */

/**
 * @typedef {object} FlightInfo
 * @property {string} dataset
 * @property {number} records  row total, or -1 when unknown
 * @property {string} [schema]  base64 IPC schema message
 */

/**
 * Open a client. Resolves once the socket is open (and, at level 2, `hello`
 * has arrived); rejects with a {@link VolleyError} when the first attempt
 * fails — after asking `GET /session-check/<session>` why, since a browser
 * sees an HTTP 401/403 at the upgrade only as a failed socket.
 * @param {ConnectOptions} options
 * @returns {Promise<VolleyClient>}
 */
export async function connect(options) {
  const client = new VolleyClient(options);
  await client._open();
  return client;
}

/** Map `{code,message}` from the wire to a VolleyError. @param {any} msg @param {string} [queryId] */
function wireError(msg, queryId) {
  const code = typeof msg?.code === 'string' ? msg.code : 'internal';
  const message = typeof msg?.message === 'string' ? msg.message : code;
  return new VolleyError(code, message, { queryId });
}

export class VolleyClient {
  /** @param {ConnectOptions} options */
  constructor(options) {
    if (!options || typeof options.session !== 'string' || options.session === '') {
      throw new VolleyError('bad_request', 'connect: a session token is required');
    }
    this.options = { ...DEFAULTS, reconnect: true, protocol: 2, ...options };
    const base = options.url ?? globalThis.location?.origin;
    if (!base) throw new VolleyError('bad_request', 'connect: url is required outside a browser');
    const u = new URL(base);
    const secure = u.protocol === 'https:' || u.protocol === 'wss:';
    /** Base for HTTP requests (session check). */
    this.httpBase = `${secure ? 'https' : 'http'}://${u.host}`;
    /** The socket URL. */
    this.streamUrl = `${secure ? 'wss' : 'ws'}://${u.host}/stream/${encodeURIComponent(options.session)}`;
    this.WebSocket = options.WebSocket ?? globalThis.WebSocket;
    if (!this.WebSocket) throw new VolleyError('bad_request', 'connect: no WebSocket implementation (pass options.WebSocket)');
    this.fetch = options.fetch ?? globalThis.fetch?.bind(globalThis);
    /** Codecs named in every `query`/`subscribe`: the ones this client decodes. */
    this.codecs = registerCodecs(options.compression ?? CODECS, {
      decompressedBufferBytesMax: options.decompressedBufferBytesMax,
    });

    /** Negotiated level: 2 when the gateway selected `volley.v2`, else 1. */
    this.level = 0;
    /** The gateway's `hello` (level 2), or null. */
    this.hello = null;
    /** 'idle' | 'connecting' | 'open' | 'reconnecting' | 'closed' */
    this.state = 'idle';
    /** Frames and control messages received since creation. */
    this.bytesReceived = 0;

    /** @type {any} */
    this._ws = null;
    this._nextId = 1;
    /** @type {Map<string, QueryStream|Subscription>} query_id → handler */
    this._handlers = new Map();
    /** @type {Map<number, Set<QueryStream|Subscription>>} stream_id → handlers (level 2) */
    this._streams = new Map();
    /** @type {Array<{resolve: (d: DatasetInfo[]) => void, reject: (e: unknown) => void}>} */
    this._pendingLists = [];
    /** @type {Map<string, Set<Function>>} */
    this._listeners = new Map();
    this._closedByUser = false;
    this._reconnectAttempts = 0;
    /** @type {any} */
    this._reconnectTimer = null;
    /** @type {any} */
    this._heartbeatTimer = null;
    this._lastMessageAt = 0;
    /** Level 1 runs one stream at a time; requests wait here. @type {Promise<void>} */
    this._level1Turn = Promise.resolve();
  }

  /**
   * Listen to client events: `state` (new state string), `error` (VolleyError
   * not tied to a query), `hello` (the hello message), `reconnected`,
   * `datasets` (the session's readable datasets changed: the new list).
   * @param {string} event
   * @param {Function} fn
   * @returns {() => void} unsubscribe function
   */
  on(event, fn) {
    let set = this._listeners.get(event);
    if (!set) this._listeners.set(event, (set = new Set()));
    set.add(fn);
    return () => set?.delete(fn);
  }

  /** @param {string} event @param {...any} args */
  _emit(event, ...args) {
    for (const fn of this._listeners.get(event) ?? []) {
      try {
        fn(...args);
      } catch (e) {
        console.error(`volley: ${event} listener failed`, e);
      }
    }
  }

  /** @param {string} state */
  _setState(state) {
    if (this.state === state) return;
    this.state = state;
    this._emit('state', state);
  }

  /** First connection: errors reject. */
  async _open() {
    this._setState('connecting');
    try {
      await this._dial();
    } catch (e) {
      this._setState('closed');
      throw e;
    }
  }

  /**
   * One connection attempt. Resolves when usable; rejects with a VolleyError.
   * @returns {Promise<void>}
   */
  _dial() {
    return new Promise((resolve, reject) => {
      const protocols = this.options.protocol === 2 ? [SUBPROTOCOL_V2] : [];
      /** @type {any} */
      let ws;
      try {
        ws = new this.WebSocket(this.streamUrl, protocols);
      } catch (e) {
        reject(new VolleyError('connection_failed', `cannot open ${this.streamUrl}: ${e}`));
        return;
      }
      ws.binaryType = 'arraybuffer';
      this._ws = ws;
      let opened = false;
      let settled = false;
      /** @type {any} */
      let helloTimer = null;
      const connectTimer = setTimeout(() => {
        if (!opened) {
          try { ws.close(); } catch { /* already closing */ }
          finish(new VolleyError('connection_failed', `no answer from ${this.httpBase} within ${this.options.connectTimeoutMs} ms`));
        }
      }, this.options.connectTimeoutMs);
      /** @param {VolleyError|null} error */
      const finish = (error) => {
        if (settled) return;
        settled = true;
        clearTimeout(connectTimer);
        if (helloTimer) clearTimeout(helloTimer);
        if (error) reject(error);
        else resolve();
      };
      const ready = () => {
        this._setState('open');
        this._reconnectAttempts = 0;
        this._startHeartbeat();
        finish(null);
      };

      ws.onopen = () => {
        opened = true;
        this._lastMessageAt = Date.now();
        this.level = ws.protocol === SUBPROTOCOL_V2 ? 2 : 1;
        if (this.level === 2) {
          helloTimer = setTimeout(ready, this.options.helloTimeoutMs);
        } else {
          ready();
        }
      };
      ws.onmessage = (/** @type {{data: any}} */ event) => {
        if (this._ws !== ws) return;
        this._lastMessageAt = Date.now();
        if (typeof event.data === 'string') {
          this.bytesReceived += event.data.length;
          let msg;
          try {
            msg = JSON.parse(event.data);
          } catch {
            this._emit('error', new VolleyError('invalid_json', 'the gateway sent a text frame that is not JSON'));
            return;
          }
          if (msg && msg.type === 'hello') {
            this.hello = msg;
            this._emit('hello', msg);
            if (!settled) ready();
            return;
          }
          this._onControl(msg);
        } else {
          this._onBinary(event.data);
        }
      };
      ws.onerror = () => {
        // Details come with the close event; browsers give none here.
      };
      ws.onclose = async (/** @type {{code: number, reason: string}} */ event) => {
        if (this._ws !== ws) return;
        this._ws = null;
        this._stopHeartbeat();
        const error = await this._closeError(event, opened);
        if (!settled) {
          finish(error);
          return;
        }
        this._onDisconnect(error);
      };
    });
  }

  /**
   * Work out why a socket closed.
   * @param {{code: number, reason: string}} event
   * @param {boolean} opened
   * @returns {Promise<VolleyError>}
   */
  async _closeError(event, opened) {
    if (!opened) {
      // A refused upgrade (401/403/…) looks like a plain failure in browsers.
      const checked = await this.checkSession();
      if (checked) return checked;
      return new VolleyError('connection_failed', `could not connect to ${this.httpBase}`, { closeCode: event.code });
    }
    const reason = typeof event.reason === 'string' ? event.reason.trim() : '';
    let code = CLOSE_CODE_ERRORS[event.code] ?? (event.code === 1000 ? 'closed' : 'connection_lost');
    const reasonCode = reason.split(/[\s:]/)[0];
    if (event.code === 1008 && PROTOCOL_CODES.has(reasonCode)) code = reasonCode;
    return new VolleyError(code, reason || `connection closed (${event.code} ${code})`, { closeCode: event.code });
  }

  /**
   * Ask the gateway whether the session is usable: `GET /session-check/<session>`
   * answers `{"ok":false,"code":"token_expired","message":"…"}` or `{"ok":true}`.
   * @returns {Promise<VolleyError|null>} the precise error, or null when ok or unknown
   */
  async checkSession() {
    if (!this.fetch) return null;
    try {
      const response = await this.fetch(`${this.httpBase}/session-check/${encodeURIComponent(this.options.session)}`, {
        cache: 'no-store',
      });
      const body = await response.json();
      if (body && body.ok === false) {
        return new VolleyError(typeof body.code === 'string' ? body.code : 'unauthorized', body.message || 'session refused');
      }
    } catch {
      // No answer or not JSON: the caller reports a generic connection failure.
    }
    return null;
  }

  _startHeartbeat() {
    this._stopHeartbeat();
    const interval = this.options.heartbeatMs;
    this._heartbeatTimer = setInterval(() => {
      const silentMs = Date.now() - this._lastMessageAt;
      if (silentMs > interval * this.options.heartbeatMissesMax) {
        // Nothing (not even a pong) for too long: the path is dead.
        try { this._ws?.close(4003, 'heartbeat_timeout'); } catch { /* closing anyway */ }
        const ws = this._ws;
        if (ws) {
          this._ws = null;
          this._onDisconnect(new VolleyError('heartbeat_timeout', `no message from the gateway for ${silentMs} ms`, { closeCode: 4003 }));
        }
        return;
      }
      this._send({ action: 'ping' });
    }, interval);
    // Don't keep a Node process alive just for the heartbeat.
    this._heartbeatTimer?.unref?.();
  }

  _stopHeartbeat() {
    if (this._heartbeatTimer) clearInterval(this._heartbeatTimer);
    this._heartbeatTimer = null;
  }

  /** @param {object} msg @returns {boolean} sent */
  _send(msg) {
    const ws = this._ws;
    if (!ws || ws.readyState !== 1) return false;
    ws.send(JSON.stringify(msg));
    return true;
  }

  /** @param {VolleyError} error */
  _onDisconnect(error) {
    // Queries cannot resume mid-stream: fail them. Subscriptions survive.
    for (const handler of [...this._handlers.values()]) {
      if (handler instanceof QueryStream) handler._fail(error);
      else handler._onDisconnect(error);
    }
    this._streams.clear();
    for (const pending of this._pendingLists.splice(0)) pending.reject(error);
    this._level1Turn = Promise.resolve();

    if (this._closedByUser) {
      this._setState('closed');
      return;
    }
    if (error.fatal || !this.options.reconnect) {
      this._failSubscriptions(error);
      this._setState('closed');
      this._emit('error', error);
      return;
    }
    this._emit('error', error);
    this._scheduleReconnect();
  }

  /** @param {VolleyError} error */
  _failSubscriptions(error) {
    for (const handler of [...this._handlers.values()]) {
      if (handler instanceof Subscription) handler._fail(error);
    }
  }

  _scheduleReconnect() {
    if (this._reconnectAttempts >= this.options.reconnectAttemptsMax) {
      const error = new VolleyError('connection_lost', `gave up after ${this._reconnectAttempts} reconnect attempts`);
      this._failSubscriptions(error);
      this._setState('closed');
      this._emit('error', error);
      return;
    }
    this._setState('reconnecting');
    const exp = Math.min(
      this.options.reconnectDelayMaxMs,
      this.options.reconnectDelayInitialMs * 2 ** Math.min(this._reconnectAttempts, 30),
    );
    // "Equal jitter": half fixed, half random, so a gateway restart is not
    // followed by every browser reconnecting in the same millisecond.
    const delay = exp / 2 + Math.random() * (exp / 2);
    this._reconnectAttempts += 1;
    this._reconnectTimer = setTimeout(async () => {
      this._reconnectTimer = null;
      if (this._closedByUser) return;
      try {
        await this._dial();
      } catch (e) {
        const error = e instanceof VolleyError ? e : new VolleyError('connection_failed', String(e));
        if (error.fatal) {
          this._failSubscriptions(error);
          this._setState('closed');
          this._emit('error', error);
          return;
        }
        this._scheduleReconnect();
        return;
      }
      for (const handler of this._handlers.values()) {
        if (handler instanceof Subscription) handler._resubscribe();
      }
      this._emit('reconnected');
    }, delay);
  }

  /** @param {any} msg */
  _onControl(msg) {
    if (!msg || typeof msg !== 'object') return;
    switch (msg.type) {
      case 'pong':
        return;
      case 'datasets': {
        const pending = this._pendingLists.shift();
        pending?.resolve(datasetList(msg.datasets));
        return;
      }
      case 'datasets_changed': {
        // Unasked (connectors came or went): not the answer to a `list`.
        const list = datasetList(msg.datasets);
        for (const handler of [...this._handlers.values()]) {
          if (handler instanceof Subscription && list.some((d) => d.name === handler.dataset)) handler._retryNow();
        }
        this._emit('datasets', list);
        return;
      }
      default:
        break;
    }
    const queryId = typeof msg.query_id === 'string' ? msg.query_id : typeof msg.request_id === 'string' ? msg.request_id : null;
    const handler = queryId ? this._handlers.get(queryId) : this.level === 1 ? this._level1Current() : undefined;
    if (handler) {
      handler._onControl(msg);
      return;
    }
    if (msg.type === 'error') {
      const error = wireError(msg, queryId ?? undefined);
      // An error with no query id most likely answers `list` (FIFO).
      const pending = !queryId ? this._pendingLists.shift() : undefined;
      if (pending) pending.reject(error);
      else if (error.code !== 'unknown_query') this._emit('error', error);
    }
  }

  /** The handler that owns level-1 binary frames (one stream at a time). */
  _level1Current() {
    for (const handler of this._handlers.values()) {
      if (handler._streaming) return handler;
    }
    return undefined;
  }

  /** @param {any} data */
  _onBinary(data) {
    /** @type {Uint8Array} */
    let bytes;
    if (data instanceof ArrayBuffer) bytes = new Uint8Array(data);
    else if (ArrayBuffer.isView(data)) bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    else return;
    this.bytesReceived += bytes.byteLength;
    if (this.level === 1) {
      this._level1Current()?._onChunk(bytes);
      return;
    }
    let frame;
    try {
      frame = parseFrameHeader(bytes);
    } catch (e) {
      // PROTOCOL.md §3: reject a malformed header by closing the socket.
      // (Browsers may only send 1000 or 3000–4999; the code goes in the reason.)
      const error = /** @type {VolleyError} */ (e);
      const ws = this._ws;
      try { ws?.close(1000, 'bad_frame_header'); } catch { /* closing anyway */ }
      if (ws) {
        this._ws = null;
        this._stopHeartbeat();
        this._onDisconnect(error);
      }
      return;
    }
    const handlers = this._streams.get(frame.streamId);
    if (!handlers) return; // a stream we already left (cancelled/unsubscribed)
    for (const handler of handlers) handler._onFrame(frame);
  }

  /**
   * @param {number} streamId
   * @param {QueryStream|Subscription} handler
   */
  _bindStream(streamId, handler) {
    let set = this._streams.get(streamId);
    if (!set) this._streams.set(streamId, (set = new Set()));
    set.add(handler);
  }

  /** @param {number|null} streamId @param {QueryStream|Subscription} handler */
  _unbindStream(streamId, handler) {
    if (streamId == null) return;
    const set = this._streams.get(streamId);
    if (!set) return;
    set.delete(handler);
    if (set.size === 0) this._streams.delete(streamId);
  }

  /** @param {string} prefix */
  _newId(prefix) {
    return `${prefix}${this._nextId++}`;
  }

  /**
   * Level 1 runs one stream at a time: wait for the previous one to finish.
   * @returns {Promise<() => void>} call to release the turn
   */
  async _takeLevel1Turn() {
    if (this.level !== 1) return () => {};
    const previous = this._level1Turn;
    /** @type {() => void} */
    let release = () => {};
    this._level1Turn = new Promise((resolve) => (release = resolve));
    await previous;
    return release;
  }

  /**
   * The datasets this session may read, from connectors online now.
   * @returns {Promise<DatasetInfo[]>}
   */
  list() {
    return new Promise((resolve, reject) => {
      if (!this._send({ action: 'list' })) {
        reject(new VolleyError('connection_lost', 'not connected'));
        return;
      }
      this._pendingLists.push({ resolve, reject });
    });
  }

  /**
   * Query a dataset. The result is an async iterable of RecordBatches,
   * decoded as frames arrive, with progress fields (`flightInfo`,
   * `bytesReceived`, `rowsReceived`, `schema`).
   * @param {string} dataset
   * @param {{queryId?: string}} [options]
   * @returns {QueryStream}
   */
  query(dataset, options = {}) {
    const queryId = options.queryId ?? this._newId('q');
    const stream = new QueryStream(this, dataset, queryId);
    this._handlers.set(queryId, stream);
    stream._start();
    return stream;
  }

  /**
   * Follow a live dataset. `onBatch` is called for every decoded batch, in
   * order. The subscription survives reconnects (it is re-sent) and gaps
   * (decoding restarts from the kept schema and dictionaries).
   * @param {string} dataset
   * @param {(batch: import('apache-arrow').RecordBatch, sub: Subscription) => void} onBatch
   * @param {SubscriptionCallbacks & {queryId?: string}} [options]
   * @returns {Subscription}
   */
  subscribe(dataset, onBatch, options = {}) {
    const queryId = options.queryId ?? this._newId('s');
    const sub = new Subscription(this, dataset, queryId, onBatch, options);
    this._handlers.set(queryId, sub);
    sub._resubscribe();
    return sub;
  }

  /**
   * Cancel a query or end a subscription by id.
   * @param {string} queryId
   */
  cancel(queryId) {
    const handler = this._handlers.get(queryId);
    if (handler) handler.cancel();
    else this._send({ action: 'cancel', query_id: queryId });
  }

  /** Close the socket for good; no reconnect. */
  close() {
    this._closedByUser = true;
    if (this._reconnectTimer) clearTimeout(this._reconnectTimer);
    this._stopHeartbeat();
    const ws = this._ws;
    const error = new VolleyError('closed', 'client closed');
    for (const handler of [...this._handlers.values()]) handler._fail(error);
    if (ws) {
      try { ws.close(1000, 'bye'); } catch { /* already closing */ }
    }
    this._ws = null;
    this._setState('closed');
  }
}

/**
 * One query: an async iterable of RecordBatches.
 *
 * ```js
 * const q = client.query('ventas');
 * for await (const batch of q) console.log(batch.numRows, q.rowsReceived, q.flightInfo?.records);
 * ```
 */
export class QueryStream {
  /**
   * @param {VolleyClient} client
   * @param {string} dataset
   * @param {string} queryId
   */
  constructor(client, dataset, queryId) {
    this.client = client;
    this.dataset = dataset;
    this.queryId = queryId;
    /** @type {FlightInfo|null} flight_info (row total for a progress bar) */
    this.flightInfo = null;
    /** @type {number|null} */
    this.streamId = null;
    /** @type {string|null} the stream's IPC body compression (`stream_start`), null when none */
    this.compression = null;
    /** IPC payload bytes received (frame headers excluded, like stream_end.total_bytes). */
    this.bytesReceived = 0;
    /** Rows decoded so far. */
    this.rowsReceived = 0;
    /** @type {import('apache-arrow').Schema|null} */
    this.schema = null;
    /** @type {number|null} total_bytes from stream_end */
    this.totalBytes = null;
    /** @type {VolleyError|null} */
    this.error = null;
    this.done = false;
    /**
     * @type {number|null} the query's place in its tenant's admission queue
     * when it joined (`queued`, PROTOCOL.md §5.1: every connector serving the
     * dataset was at its stream limit); null once it started or if it never waited
     */
    this.queuedPosition = null;
    /** @type {AsyncQueue<Uint8Array>} */
    this._bytes = new AsyncQueue();
    this._nextSequence = 0;
    this._cancelled = false;
    this._streaming = false;
    this._iterated = false;
    /** @type {Array<(info: FlightInfo) => void>} */
    this._flightInfoWaiters = [];
    /** @type {() => void} */
    this._releaseTurn = () => {};
  }

  async _start() {
    this._releaseTurn = await this.client._takeLevel1Turn();
    if (this.done) {
      this._releaseTurn();
      return;
    }
    if (!this.client._send({ action: 'query', dataset: this.dataset, query_id: this.queryId, compression: this.client.codecs })) {
      this._fail(new VolleyError('connection_lost', 'not connected', { queryId: this.queryId }));
    }
  }

  /** Resolves with flight_info when it arrives (or null if the stream ends without one). */
  flightInfoReady() {
    if (this.flightInfo || this.done) return Promise.resolve(this.flightInfo);
    return new Promise((resolve) => this._flightInfoWaiters.push(resolve));
  }

  /** @param {any} msg */
  _onControl(msg) {
    switch (msg.type) {
      case 'flight_info':
        this.flightInfo = {
          dataset: String(msg.dataset ?? this.dataset),
          records: typeof msg.records === 'number' ? msg.records : -1,
          schema: msg.schema,
        };
        this.queuedPosition = null;
        for (const wake of this._flightInfoWaiters.splice(0)) wake(this.flightInfo);
        return;
      case 'queued':
        // Waiting for a stream slot; it starts by itself (PROTOCOL.md §5.1).
        this.queuedPosition = typeof msg.position === 'number' ? msg.position : null;
        this.client._emit('queued', { queryId: this.queryId, dataset: this.dataset, position: this.queuedPosition });
        return;
      case 'stream_start':
        this.queuedPosition = null;
        this._streaming = true;
        this.compression = typeof msg.compression === 'string' ? msg.compression : null;
        if (typeof msg.stream_id === 'number') {
          this.streamId = msg.stream_id;
          this.client._bindStream(msg.stream_id, this);
        }
        return;
      case 'stream_end':
        this.totalBytes = typeof msg.total_bytes === 'number' ? msg.total_bytes : null;
        if (msg.error) this._fail(wireError(msg.error, this.queryId));
        else this._finish();
        return;
      case 'error':
        this._fail(wireError(msg, this.queryId));
        return;
      default:
        return; // unknown types are ignored (forward compatibility)
    }
  }

  /** @param {FrameHeader} frame */
  _onFrame(frame) {
    if (this.done) return;
    if (frame.sequence < this._nextSequence) return; // duplicate delivery of a shared stream
    if (frame.sequence !== this._nextSequence) {
      this._fail(new VolleyError('bad_sequence', `stream ${frame.streamId}: expected frame ${this._nextSequence}, got ${frame.sequence}`, { queryId: this.queryId }));
      this.client._send({ action: 'cancel', query_id: this.queryId });
      return;
    }
    this._nextSequence += 1;
    this._onChunk(frame.payload);
  }

  /** Level 1 chunk, or a level-2 payload. @param {Uint8Array} bytes */
  _onChunk(bytes) {
    if (this.done) return;
    this.bytesReceived += bytes.byteLength;
    this._bytes.push(bytes);
  }

  _cleanup() {
    this.done = true;
    this._streaming = false;
    this.client._handlers.delete(this.queryId);
    this.client._unbindStream(this.streamId, this);
    this._releaseTurn();
    for (const wake of this._flightInfoWaiters.splice(0)) wake(this.flightInfo);
  }

  _finish() {
    if (this.done) return;
    this._cleanup();
    this._bytes.close();
  }

  /** @param {VolleyError} error */
  _fail(error) {
    if (this.done) return;
    this._cleanup();
    if (this._cancelled && (error.code === 'cancelled' || error.code === 'closed')) {
      this._bytes.close();
      return;
    }
    this.error = error;
    this._bytes.fail(error);
  }

  /** Stop the query; the iterator ends quietly. */
  cancel() {
    if (this.done) return;
    this._cancelled = true;
    this.client._send({ action: 'cancel', query_id: this.queryId });
    this._fail(new VolleyError('cancelled', 'cancelled by the client', { queryId: this.queryId }));
  }

  /** @returns {AsyncGenerator<import('apache-arrow').RecordBatch>} */
  async *batches() {
    if (this._iterated) throw new VolleyError('bad_request', 'a query can be iterated only once');
    this._iterated = true;
    try {
      for await (const batch of decodeBatches(this._bytes, (schema) => (this.schema = schema))) {
        this.rowsReceived += batch.numRows;
        yield batch;
      }
    } catch (e) {
      if (this._cancelled) return;
      if (e instanceof VolleyError) throw e;
      const error = new VolleyError('decode_error', `Arrow decoding failed: ${e instanceof Error ? e.message : e}`, { queryId: this.queryId });
      this.cancel();
      this._cancelled = false;
      throw error;
    } finally {
      // The consumer stopped early (break/throw): tell the gateway.
      if (!this.done) this.cancel();
    }
    if (this.error) throw this.error;
  }

  [Symbol.asyncIterator]() {
    return this.batches();
  }

  /**
   * Read the whole result into one apache-arrow Table.
   * @returns {Promise<import('apache-arrow').Table>}
   */
  async table() {
    const { Table } = await import('apache-arrow');
    const batches = [];
    for await (const batch of this) batches.push(batch);
    if (batches.length === 0 && this.schema) return new Table(this.schema);
    return new Table(batches);
  }
}

/**
 * @typedef {object} SubscriptionCallbacks
 * @property {(sub: Subscription) => void} [onStart]  a (fresh) stream started
 * @property {(info: {error: VolleyError, streamId: number|null}, sub: Subscription) => void} [onWaiting]
 *   the connector serving the live stream went away (`live_waiting`): the
 *   subscription stays open and resumes with a new stream when a connector
 *   serving the dataset registers again
 * @property {(sub: Subscription) => void} [onRestart]  a new stream replaces the
 *   previous one (after `live_waiting`, a reconnect, or a re-attach): called in
 *   order, after the previous stream's last batch and before the new stream's
 *   schema and first batch. The new stream starts with its recent batches (its
 *   window), which replace what was shown: they are not a continuation
 * @property {(schema: import('apache-arrow').Schema, sub: Subscription) => void} [onSchema]
 * @property {(gap: {nextSequence: number, skippedFrames: number}, sub: Subscription) => void} [onGap]
 * @property {(error: VolleyError, sub: Subscription) => void} [onError]  non-fatal unless `sub.done`
 * @property {(sub: Subscription) => void} [onEnd]  the subscription is over
 */

/**
 * @typedef {object} Segment  one apache-arrow reader's input
 * @property {AsyncQueue<Uint8Array>} bytes
 * @property {boolean} restart  a new stream replacing the previous one starts here
 * @property {boolean} cut      its stream stopped without ending (connector gone, socket lost, superseded)
 */

/**
 * A live subscription. Keeps the stream's schema frame (kind 1) and dictionary
 * frames (kind 2) so that after a `gap` (PROTOCOL.md §5.2, delivery resumes at
 * the next record_batch frame) a fresh reader can be started with
 * schema + dictionaries + the following frames.
 */
export class Subscription {
  /**
   * @param {VolleyClient} client
   * @param {string} dataset
   * @param {string} queryId
   * @param {(batch: import('apache-arrow').RecordBatch, sub: Subscription) => void} onBatch
   * @param {SubscriptionCallbacks} callbacks
   */
  constructor(client, dataset, queryId, onBatch, callbacks) {
    this.client = client;
    this.dataset = dataset;
    this.queryId = queryId;
    this.onBatch = onBatch;
    this.callbacks = callbacks;
    /** @type {number|null} */
    this.streamId = null;
    /** @type {string|null} the current stream's IPC body compression, null when none */
    this.compression = null;
    this.bytesReceived = 0;
    this.rowsReceived = 0;
    this.batchesReceived = 0;
    this.gaps = 0;
    /** @type {import('apache-arrow').Schema|null} */
    this.schema = null;
    /** @type {VolleyError|null} */
    this.error = null;
    this.done = false;
    this._streaming = false;
    /** @type {Uint8Array|null} the schema message of the current stream */
    this._schemaFrame = null;
    /** @type {Uint8Array[]} dictionary messages of the current stream, in order */
    this._dictionaryFrames = [];
    this._lastSequence = -1;
    /** Frames below this sequence are dropped (after a gap). */
    this._resumeSequence = 0;
    /**
     * True between `live_waiting` (or, after a reconnect, a re-subscribe
     * answered `dataset_not_found`/`connector_offline`) and the next `stream_start`.
     */
    this.waiting = false;
    /** Streams that replaced an earlier one of this subscription. */
    this.restarts = 0;
    /** A `stream_start` was seen: the next one is a restart. */
    this._started = false;
    /** Re-sent after the socket reconnected, and not started since. */
    this._afterReconnect = false;
    /** @type {ReturnType<typeof setTimeout>|null} the next re-subscribe while waiting for the dataset */
    this._retryTimer = null;
    this._retries = 0;
    /** @type {Segment|null} bytes of the current decode segment */
    this._segment = null;
    /** @type {AsyncQueue<Segment>} segments, decoded one after the other */
    this._segments = new AsyncQueue();
    /** @type {() => void} */
    this._releaseTurn = () => {};
    this._decodeLoop = this._runDecoder();
  }

  async _resubscribe() {
    this._clearRetry();
    if (this.done) return;
    this._releaseTurn();
    this._releaseTurn = await this.client._takeLevel1Turn();
    this.client._send({ action: 'subscribe', dataset: this.dataset, query_id: this.queryId, compression: this.client.codecs });
  }

  /** Decode segments in order so batches reach `onBatch` in order. */
  async _runDecoder() {
    for await (const segment of this._segments) {
      if (segment.restart) {
        try {
          this.callbacks.onRestart?.(this);
        } catch (e) {
          console.error('volley: onRestart failed', e);
        }
      }
      try {
        for await (const batch of decodeBatches(segment.bytes, (schema) => {
          this.schema = schema;
          this.callbacks.onSchema?.(schema, this);
        })) {
          this.rowsReceived += batch.numRows;
          this.batchesReceived += 1;
          try {
            this.onBatch(batch, this);
          } catch (e) {
            console.error('volley: onBatch failed', e);
          }
        }
      } catch (e) {
        if (this.done) return;
        // A stream cut off mid-message (its connector went away) leaves a
        // truncated message behind: not an error of the data.
        if (segment.cut) continue;
        const error = e instanceof VolleyError ? e : new VolleyError('decode_error', `Arrow decoding failed: ${e instanceof Error ? e.message : e}`, { queryId: this.queryId });
        this.callbacks.onError?.(error, this);
      }
    }
  }

  /**
   * Start a new decode segment (a fresh apache-arrow reader), optionally
   * seeded with schema + dictionaries (after a gap), or marked as a new
   * stream replacing the previous one (`restart`).
   * @param {boolean} seed
   * @param {boolean} [restart]
   */
  _newSegment(seed, restart = false) {
    this._endSegment(false);
    /** @type {Segment} */
    const segment = { bytes: new AsyncQueue(), restart, cut: false };
    if (seed && this._schemaFrame) {
      segment.bytes.push(this._schemaFrame);
      for (const dictionary of this._dictionaryFrames) segment.bytes.push(dictionary);
    }
    this._segment = segment;
    this._segments.push(segment);
  }

  /** Close the current segment; `cut` when its stream stopped without ending. @param {boolean} cut */
  _endSegment(cut) {
    if (!this._segment) return;
    this._segment.cut = this._segment.cut || cut;
    this._segment.bytes.close();
    this._segment = null;
  }

  /** @param {any} msg */
  _onControl(msg) {
    switch (msg.type) {
      case 'stream_start': {
        // First start, a re-subscribe after reconnect, or a re-attach after
        // connector loss (PROTOCOL.md §5.3, `live_waiting`): a fresh stream
        // with its own schema either way, decoded by a fresh reader.
        const restart = this._started;
        this._started = true;
        this.waiting = false;
        this._afterReconnect = false;
        this._retries = 0;
        this._clearRetry();
        if (restart) this.restarts += 1;
        this._endSegment(true);
        this.client._unbindStream(this.streamId, this);
        this.streamId = typeof msg.stream_id === 'number' ? msg.stream_id : null;
        this.compression = typeof msg.compression === 'string' ? msg.compression : null;
        if (this.streamId != null) this.client._bindStream(this.streamId, this);
        this._streaming = true;
        this._schemaFrame = null;
        this._dictionaryFrames = [];
        this._lastSequence = -1;
        this._resumeSequence = 0;
        this._newSegment(false, restart);
        this.callbacks.onStart?.(this);
        return;
      }
      case 'live_waiting': {
        // The connector went away; the gateway keeps the subscription and
        // sends a new stream_start when one serving the dataset is back.
        this._streaming = false;
        this.waiting = true;
        this._endSegment(true);
        this.client._unbindStream(this.streamId, this);
        const streamId = this.streamId;
        this.streamId = null;
        const error = wireError(msg.error ?? { code: 'connector_gone' }, this.queryId);
        this.callbacks.onWaiting?.({ error, streamId }, this);
        this.client._emit('waiting', { queryId: this.queryId, dataset: this.dataset, error });
        return;
      }
      case 'gap': {
        const nextSequence = typeof msg.next_sequence === 'number' ? msg.next_sequence : this._lastSequence + 1;
        this.gaps += 1;
        this._resumeSequence = nextSequence;
        this._newSegment(true);
        this.callbacks.onGap?.({ nextSequence, skippedFrames: Number(msg.skipped_frames ?? 0) }, this);
        return;
      }
      case 'stream_end':
        // A live stream that failed (source_error, retained_limit, …; at
        // level 1 also connector_gone) ends the subscription, as it would a
        // query: trying again would fail again (PROTOCOL.md §5.3). A level-2
        // connector loss comes as live_waiting instead. Without an error the
        // subscription waits for a new stream_start.
        this._streaming = false;
        this._endSegment(Boolean(msg.error));
        this.client._unbindStream(this.streamId, this);
        this.streamId = null;
        if (msg.error) this._fail(wireError(msg.error, this.queryId));
        return;
      case 'unsubscribed':
        this._end();
        return;
      case 'error': {
        const error = wireError(msg, this.queryId);
        if (this._afterReconnect && RESUBSCRIBE_WAIT_CODES.has(error.code)) {
          // The socket reconnected to a gateway that has no connector serving
          // the dataset yet (it restarted; connectors register again within
          // moments): wait for it, as after live_waiting, instead of ending.
          this._waitAndRetry(error);
          return;
        }
        this._fail(error);
        return;
      }
      default:
        return;
    }
  }

  /** @param {VolleyError} error */
  _waitAndRetry(error) {
    this._streaming = false;
    this._releaseTurn();
    const first = !this.waiting;
    this.waiting = true;
    const { resubscribeFirstRetryMs, resubscribeRetryMs } = this.client.options;
    this._clearRetry();
    this._retryTimer = setTimeout(() => {
      this._retryTimer = null;
      this._resubscribe();
    }, this._retries === 0 ? resubscribeFirstRetryMs : resubscribeRetryMs);
    this._retries += 1;
    if (!first) return;
    this.callbacks.onWaiting?.({ error, streamId: null }, this);
    this.client._emit('waiting', { queryId: this.queryId, dataset: this.dataset, error });
  }

  /** The dataset is listed again: re-subscribe now rather than at the timer. */
  _retryNow() {
    if (this.done || !this._retryTimer) return;
    this._resubscribe();
  }

  _clearRetry() {
    if (this._retryTimer) clearTimeout(this._retryTimer);
    this._retryTimer = null;
  }

  /** @param {FrameHeader} frame */
  _onFrame(frame) {
    if (this.done || !this._segment) return;
    if (frame.sequence <= this._lastSequence) return; // duplicate
    if (frame.sequence < this._resumeSequence) return; // skipped by a gap
    this._lastSequence = frame.sequence;
    if (frame.kind === FrameKind.SCHEMA) {
      this._schemaFrame = frame.payload;
      this._dictionaryFrames = [];
    } else if (frame.kind === FrameKind.DICTIONARY) {
      this._dictionaryFrames.push(frame.payload);
    }
    this._onChunk(frame.payload);
  }

  /** @param {Uint8Array} bytes */
  _onChunk(bytes) {
    if (this.done || !this._segment) return;
    this.bytesReceived += bytes.byteLength;
    this._segment.bytes.push(bytes);
  }

  /** The socket dropped; the client re-subscribes after reconnecting. @param {VolleyError} error */
  _onDisconnect(error) {
    this._clearRetry();
    this._afterReconnect = true;
    this._streaming = false;
    this._endSegment(true);
    this.streamId = null;
    this._releaseTurn();
    this.callbacks.onError?.(error, this);
  }

  /** @param {VolleyError|null} [error]  reported to onError (with `done` already true) unless `closed` */
  _end(error = null) {
    if (this.done) return;
    this.done = true;
    this.waiting = false;
    this._clearRetry();
    this._streaming = false;
    this.client._handlers.delete(this.queryId);
    this.client._unbindStream(this.streamId, this);
    this._endSegment(true);
    this._segments.close();
    this._releaseTurn();
    if (error && error.code !== 'closed') this.callbacks.onError?.(error, this);
    this.callbacks.onEnd?.(this);
  }

  /** @param {VolleyError} error */
  _fail(error) {
    if (this.done) return;
    this.error = error;
    this._end(error);
  }

  /** Leave the live stream. */
  unsubscribe() {
    if (this.done) return;
    this.client._send({ action: 'unsubscribe', query_id: this.queryId });
    this._end();
  }

  /** Alias of {@link unsubscribe}. */
  cancel() {
    this.unsubscribe();
  }
}
