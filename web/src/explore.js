// @ts-check
/**
 * The explore view: FINOS Perspective's engine (WebAssembly, in a Web
 * Worker) and `<perspective-viewer>` with the datagrid and d3fc chart
 * plugins, over the dataset the dashboard streamed. Loaded lazily (a
 * separate chunk, fetched when the user opens the view), so the overview
 * page does not pay for it.
 *
 * Data path: the client's apache-arrow RecordBatches are re-serialised as
 * Arrow IPC streams (`tableToIPC`) and loaded into a Perspective table
 * (`client.table(ipc)`); later batches go in with `table.update(ipc)`. A live
 * dataset's table is created with Perspective's `limit` option, so it keeps
 * the newest `limit` rows (older rows are overwritten; the dashboard passes
 * its LIVE_WINDOW_ROWS).
 */
import perspective from '@perspective-dev/client';
import perspectiveViewer from '@perspective-dev/viewer';
import '@perspective-dev/viewer-datagrid';
import '@perspective-dev/viewer-d3fc';
import { Table, tableToIPC, DataType } from 'apache-arrow';
// esbuild's `file` loader: these imports are the URLs of the copied files.
import SERVER_WASM from '@perspective-dev/server/dist/wasm/perspective-server.wasm';
import VIEWER_WASM from '@perspective-dev/viewer/dist/wasm/perspective-viewer.wasm';

/**
 * `@perspective-dev/viewer-d3fc` is published up to 4.4.1, whose chart
 * elements describe themselves with the 4.x plugin getters (`name`,
 * `select_mode`, `config_column_names`, …); `<perspective-viewer>` 5.x asks a
 * plugin for `get_static_config()` (and its settings schemas) instead. This
 * adapter gives the charts' common base class those methods, built from the
 * getters, before the viewer's WebAssembly starts and reads them.
 */
function adaptD3fcPlugins() {
  const chart = customElements.get('perspective-viewer-d3fc-ybar');
  if (!chart) return;
  const base = Object.getPrototypeOf(chart).prototype;
  if (typeof base.get_static_config === 'function') return;
  base.get_static_config = function getStaticConfig() {
    return {
      name: this.name,
      category: this.category ?? null,
      select_mode: this.select_mode ?? 'select',
      min_config_columns: this.min_config_columns ?? null,
      config_column_names: this.config_column_names ?? [],
      max_cells: this.max_cells ?? null,
      max_columns: this.max_columns ?? null,
      group_rollup_modes: ['flat'],
      priority: 0,
      can_render_column_styles: false,
    };
  };
  if (typeof base.plugin_config_schema !== 'function') base.plugin_config_schema = () => [];
  if (typeof base.column_config_schema !== 'function') base.column_config_schema = () => [];
}
adaptD3fcPlugins();

/** @type {Promise<any>|null} */
let engine = null;
let tableSerial = 0;

/** Start the engine once: compile both WebAssembly modules and start the worker. */
function startEngine() {
  if (!engine) {
    perspective.init_server(fetch(SERVER_WASM));
    engine = perspectiveViewer.init_client(fetch(VIEWER_WASM)).then(() => perspective.worker());
  }
  return engine;
}

/**
 * Perspective reads these Arrow types; columns of other types (lists,
 * structs, unions, binary, …) are left out of the explore view, which says so.
 * @param {import('apache-arrow').DataType} type
 */
function supported(type) {
  if (DataType.isDictionary(type)) return DataType.isUtf8(type.dictionary) || DataType.isLargeUtf8(type.dictionary);
  return DataType.isInt(type) || DataType.isFloat(type) || DataType.isBool(type) || DataType.isUtf8(type)
    || DataType.isLargeUtf8(type) || DataType.isDate(type) || DataType.isTimestamp(type) || DataType.isDecimal(type);
}

/**
 * Batches restricted to the columns Perspective reads, as one IPC stream.
 * @param {import('apache-arrow').RecordBatch[]} batches
 * @param {number[]} keep  column indexes
 */
function toIPC(batches, keep) {
  const table = new Table(batches);
  const selected = keep.length === table.numCols ? table : table.selectAt(keep);
  return tableToIPC(selected, 'stream');
}

/**
 * One dataset in the explore view.
 */
export class Explorer {
  /**
   * @param {HTMLElement} host  where `<perspective-viewer>` goes
   * @param {{live: boolean, name: string}} dataset
   */
  constructor(host, dataset) {
    this.host = host;
    this.dataset = dataset;
    /** @type {any} */
    this.viewer = null;
    /** @type {any} */
    this.table = null;
    /** @type {number[]} */
    this.keep = [];
    /** @type {string[]} names of the columns left out */
    this.dropped = [];
    this.closed = false;
    /** Updates are applied one after the other. @type {Promise<void>} */
    this.queue = Promise.resolve();
  }

  /**
   * Load what the dashboard has so far.
   * @param {import('apache-arrow').Schema} schema
   * @param {import('apache-arrow').RecordBatch[]} batches
   * @param {number} limit  rows a live dataset's table keeps
   */
  load(schema, batches, limit) {
    // Updates that arrive while loading wait in the queue behind the load.
    const loading = this.queue.then(() => this._load(schema, batches, limit));
    this.queue = loading.catch(() => {});
    return loading;
  }

  /**
   * @param {import('apache-arrow').Schema} schema
   * @param {import('apache-arrow').RecordBatch[]} batches
   * @param {number} limit
   */
  async _load(schema, batches, limit) {
    const client = await startEngine();
    if (this.closed) return;
    this.keep = [];
    this.dropped = [];
    schema.fields.forEach((field, i) => (supported(field.type) ? this.keep.push(i) : this.dropped.push(field.name)));
    const ipc = toIPC(batches.length ? batches : [], this.keep);
    const source = batches.length ? ipc : tableToIPC(new Table(this.keep.length === schema.fields.length ? schema : schema.select(this.keep.map((i) => schema.fields[i].name))), 'stream');
    // Table names are unique in the worker; a reopened dataset gets a new one.
    tableSerial += 1;
    const name = `${this.dataset.name} #${tableSerial}`;
    const options = this.dataset.live ? { name, limit } : { name };
    this.table = await client.table(source.buffer.slice(source.byteOffset, source.byteOffset + source.byteLength), options);
    if (this.closed) {
      await this.table.delete().catch(() => {});
      return;
    }
    const viewer = document.createElement('perspective-viewer');
    viewer.setAttribute('data-testid', 'perspective-viewer');
    this.host.replaceChildren(viewer);
    this.viewer = viewer;
    await /** @type {any} */ (viewer).load(client);
    await /** @type {any} */ (viewer).restore({
      table: name,
      title: this.dataset.name,
      plugin: 'Datagrid',
      settings: false,
      theme: matchMedia('(prefers-color-scheme: dark)').matches ? 'Pro Dark' : 'Pro Light',
    });
  }

  /** Add batches that arrived after `load`. @param {import('apache-arrow').RecordBatch[]} batches */
  update(batches) {
    if (this.closed || batches.length === 0) return this.queue;
    this.queue = this.queue.then(async () => {
      if (this.closed || !this.table) return;
      const ipc = toIPC(batches, this.keep);
      await this.table.update(ipc.buffer.slice(ipc.byteOffset, ipc.byteOffset + ipc.byteLength));
    });
    return this.queue;
  }

  /** A live stream restarted: its window replaces the rows. */
  clear() {
    this.queue = this.queue.then(async () => {
      if (!this.closed && this.table) await this.table.clear();
    });
    return this.queue;
  }

  /** Rows in the Perspective table. @returns {Promise<number>} */
  async size() {
    await this.queue;
    return this.table ? this.table.size() : 0;
  }

  /** Rows the viewer's current view shows (after group-by, filters). @returns {Promise<number>} */
  async viewRows() {
    if (!this.viewer) return 0;
    const view = await this.viewer.getView();
    return view.num_rows();
  }

  /** @param {Record<string, any>} config  a `<perspective-viewer>` restore() config */
  restore(config) {
    return this.viewer?.restore(config);
  }

  /** The current view as CSV. @returns {Promise<string>} */
  async csv() {
    if (!this.viewer) return '';
    const view = await this.viewer.getView();
    return view.to_csv();
  }

  async close() {
    this.closed = true;
    const viewer = this.viewer;
    const table = this.table;
    this.viewer = null;
    this.table = null;
    await this.queue.catch(() => {});
    try {
      await viewer?.delete();
    } catch {
      // already gone
    }
    viewer?.remove();
    await table?.delete().catch(() => {});
  }
}
