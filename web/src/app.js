// @ts-check
/**
 * The Volley dashboard: session → dataset list → query (or live subscription)
 * → an overview (counters, a chart, the rows, a page at a time) and, on
 * demand, the explore view (FINOS Perspective, loaded lazily from
 * explore.js).
 */
import { DataType } from 'apache-arrow';
import {
  Chart,
  LineController,
  BarController,
  ScatterController,
  LineElement,
  BarElement,
  PointElement,
  LinearScale,
  CategoryScale,
  Tooltip,
  Legend,
  Filler,
} from 'chart.js';
import { connect, VolleyError } from './client.js';
import { formatBytes } from './format.js';
import { aggregateByCategory, bucketByTime, formatTime, sampleStride, timeTicks } from './chart-model.js';
import { RowTable } from './table-view.js';

Chart.register(LineController, BarController, ScatterController, LineElement, BarElement, PointElement, LinearScale, CategoryScale, Tooltip, Legend, Filler);
// Colours follow the page's theme (style.css: light, or dark under
// prefers-color-scheme: dark).
const themeCss = getComputedStyle(document.documentElement);
Chart.defaults.color = themeCss.getPropertyValue('--muted').trim() || Chart.defaults.color;
const GRID_COLOR = themeCss.getPropertyValue('--grid').trim() || '#eef1f5';
const LINE_COLOR = '#2f6fed';

/** A live dataset keeps its newest N rows (table, chart and the explore view's Perspective `limit`). */
const LIVE_WINDOW_ROWS = 10_000;
/** Scatter plots and row-number lines draw at most this many points; above it rows are sampled uniformly, and the chart says so. */
const CHART_POINTS_MAX = 4000;
/** A time axis is cut into at most about this many buckets (every row counts in its bucket). */
const TIME_BUCKETS_MAX = 200;
/** A bar chart shows at most this many categories; the rest are one "other" bar (count, sum). */
const CATEGORY_BARS_MAX = 30;
/** While data streams the chart, table and explore counters are redrawn at most this often. */
const CHART_REDRAW_MS = 250;
/** X option that plots against the row number. */
const ROW_INDEX = '__row__';
/** Y option that counts rows. */
const COUNT = '__count__';

/** @param {string} id */
const $ = (id) => /** @type {HTMLElement} */ (document.getElementById(id));

const el = {
  form: /** @type {HTMLFormElement} */ ($('session-form')),
  sessionInput: /** @type {HTMLInputElement} */ ($('session-input')),
  who: $('who'),
  connState: $('conn-state'),
  status: $('status'),
  datasets: $('datasets'),
  title: $('dataset-title'),
  kind: $('dataset-kind'),
  rowCount: $('row-count'),
  rowTotal: $('row-total'),
  byteCount: $('byte-count'),
  batchCount: $('batch-count'),
  progressBar: $('progress-bar'),
  xSelect: /** @type {HTMLSelectElement} */ ($('x-select')),
  ySelect: /** @type {HTMLSelectElement} */ ($('y-select')),
  aggSelect: /** @type {HTMLSelectElement} */ ($('agg-select')),
  aggLabel: $('agg-label'),
  chartNote: $('chart-note'),
  canvas: /** @type {HTMLCanvasElement} */ ($('chart-canvas')),
  table: /** @type {HTMLTableElement} */ ($('rows-table')),
  tablePager: $('table-pager'),
  tableCaption: $('table-caption'),
  chartEmpty: $('chart-empty'),
  chartBox: /** @type {HTMLElement} */ (document.querySelector('.chart-box')),
  chartControls: /** @type {HTMLElement} */ (document.querySelector('.chart-controls')),
  tableEmpty: $('table-empty'),
  content: /** @type {HTMLElement} */ (document.querySelector('.content')),
  tabOverview: $('tab-overview'),
  tabExplore: $('tab-explore'),
  overviewPanel: $('overview-panel'),
  explorePanel: $('explore-panel'),
  exploreHost: $('explore-host'),
  exploreRows: $('explore-row-count'),
  exploreNote: $('explore-note'),
  exploreGroup: /** @type {HTMLSelectElement} */ ($('explore-group')),
  explorePlugin: /** @type {HTMLSelectElement} */ ($('explore-plugin')),
  exploreSettings: /** @type {HTMLButtonElement} */ ($('explore-settings')),
  exploreExport: /** @type {HTMLButtonElement} */ ($('explore-export')),
};

/** @type {import('./client.js').VolleyClient | null} */
let client = null;
/** @type {Chart | null} */
let chart = null;
/** @type {View | null} */
let view = null;
/** @type {import('./client.js').DatasetInfo[]} */
let datasets = [];
const rowTable = new RowTable(el.table, el.tablePager, el.tableCaption);

// ---------------------------------------------------------------- status

/** @type {Record<string, (dataset: string) => string>} */
const MESSAGES = {
  token_expired: () => 'Your session has expired. Open a fresh dashboard link (or paste a new token) to continue.',
  revoked: () => 'Your session was revoked. Ask your administrator for a new link.',
  unauthorized: () => 'This session token is not valid. Check the link or paste a new token.',
  forbidden: () => 'This session is not allowed here (wrong role, edge or origin).',
  dataset_not_found: (d) => `Unknown dataset “${d}”: no connector online lists it. Pick another dataset; it reappears in the list when its connector is back.`,
  dataset_forbidden: (d) => `Your session may not read “${d}”. Ask for a link that grants it, or pick another dataset.`,
  connector_offline: () => 'The data connector for your account is offline. Data will appear once it reconnects.',
  connector_gone: (d) => `The connector serving “${d}” disconnected before the data was complete. Open the dataset again when it is back in the list.`,
  not_live: (d) => `“${d}” is no longer a live dataset. Open it again from the list to query it.`,
  query_timeout: (d) => `The query for “${d}” took too long and was stopped. Try again; if it keeps happening the connector's source is too slow.`,
  source_error: (d) => `The connector could not read “${d}” from its source. Try again later or pick another dataset; the connector's administrator finds the cause in its log under the error id in brackets.`,
  too_many_requests: () => 'Too many open queries on this session; close some and try again.',
  slow_consumer: () => 'This page fell too far behind the live stream and was disconnected.',
  retained_limit: (d) => `The live stream of “${d}” carries more dictionary data than the gateway keeps, or this page has too much queued to join it.`,
  connection_failed: () => 'Cannot reach the Volley gateway.',
  connection_lost: () => 'The connection to the gateway was lost.',
  heartbeat_timeout: () => 'The gateway stopped answering.',
  decode_error: (d) => `The data of “${d}” could not be decoded.`,
};

/**
 * @param {string} text
 * @param {'info'|'ok'|'warn'|'error'} level
 * @param {string} [code]
 */
function setStatus(text, level = 'info', code = '') {
  el.status.textContent = text;
  el.status.className = `status status-${level}`;
  if (code) el.status.dataset.code = code;
  else delete el.status.dataset.code;
}

/** @param {unknown} error @param {string} [dataset] */
function showError(error, dataset = '') {
  const e = error instanceof VolleyError ? error : new VolleyError('internal', String(error));
  const friendly = MESSAGES[e.code]?.(dataset);
  const detail = e.message && e.message !== e.code && !(friendly ?? '').includes(e.message) ? ` ${e.message}` : '';
  const text = friendly ? `${friendly}${detail ? ` (${e.code}:${detail})` : ` (${e.code})`}` : `Error ${e.code}:${detail}`;
  setStatus(text, 'error', e.code);
}


// ---------------------------------------------------------------- format

/** @param {number} n */
const formatCount = (n) => n.toLocaleString('en');

/** @param {any} value @returns {number|null} */
function toNumber(value) {
  if (value === null || value === undefined) return null;
  if (typeof value === 'number') return Number.isFinite(value) ? value : null;
  if (typeof value === 'bigint') return Number(value);
  if (value instanceof Date) return value.getTime();
  return null;
}

// ---------------------------------------------------------------- view

/**
 * @typedef {object} ChartColumn
 * @property {number} index  column index in the schema
 * @property {string} name
 * @property {'time'|'int'|'float'|'category'} kind
 */

/** Everything about the dataset on screen. */
class View {
  /** @param {import('./client.js').DatasetInfo} dataset */
  constructor(dataset) {
    this.dataset = dataset;
    this.live = dataset.live;
    /** @type {import('./client.js').QueryStream | import('./client.js').Subscription | null} */
    this.handle = null;
    /** @type {import('apache-arrow').Schema | null} */
    this.schema = null;
    /** @type {ChartColumn[]} */
    this.columns = [];
    /** The rows held: a query's whole result, a live dataset's newest LIVE_WINDOW_ROWS (whole batches). @type {import('apache-arrow').RecordBatch[]} */
    this.batches = [];
    /** Rows in `batches`. */
    this.heldRows = 0;
    /** Rows received (since the live stream last restarted). */
    this.rows = 0;
    this.batchCount = 0;
    this.closed = false;
    this.startedAt = performance.now();
    /** @type {any} */
    this.redrawTimer = null;
    this.lostConnection = false;
    /** @type {import('./explore.js').Explorer | null} */
    this.explorer = null;
  }

  close() {
    this.closed = true;
    if (this.redrawTimer) clearTimeout(this.redrawTimer);
    const handle = this.handle;
    this.handle = null;
    handle?.cancel();
    this.explorer?.close();
    this.explorer = null;
  }
}

/** @param {import('apache-arrow').Schema} schema @returns {ChartColumn[]} */
function chartColumns(schema) {
  /** @type {ChartColumn[]} */
  const columns = [];
  schema.fields.forEach((field, index) => {
    const type = field.type;
    if (DataType.isTimestamp(type) || DataType.isDate(type)) columns.push({ index, name: field.name, kind: 'time' });
    else if (DataType.isInt(type)) columns.push({ index, name: field.name, kind: 'int' });
    else if (DataType.isFloat(type) || DataType.isDecimal(type)) columns.push({ index, name: field.name, kind: 'float' });
    else if (DataType.isUtf8(type) || DataType.isLargeUtf8(type) || DataType.isBool(type) || DataType.isDictionary(type)) columns.push({ index, name: field.name, kind: 'category' });
  });
  return columns;
}

/** Default x: the first timestamp/date column, else the first text column, else the row number. @param {ChartColumn[]} columns */
function defaultX(columns) {
  const pick = columns.find((c) => c.kind === 'time') ?? columns.find((c) => c.kind === 'category');
  return pick ? String(pick.index) : ROW_INDEX;
}

/** Default y: the first float column, else the first numeric one, else a row count. @param {ChartColumn[]} columns */
function defaultY(columns) {
  const numeric = columns.filter((c) => c.kind === 'int' || c.kind === 'float');
  const pick = numeric.find((c) => c.kind === 'float') ?? numeric[0];
  return pick ? String(pick.index) : COUNT;
}

/** Per-batch column values, extracted once. @type {WeakMap<import('apache-arrow').RecordBatch, Map<number, any[]>>} */
const extracted = new WeakMap();

/** @param {import('apache-arrow').RecordBatch} batch @param {ChartColumn} column */
function batchValues(batch, column) {
  let columns = extracted.get(batch);
  if (!columns) extracted.set(batch, (columns = new Map()));
  let values = columns.get(column.index);
  if (!values) {
    const vector = batch.getChildAt(column.index);
    values = new Array(batch.numRows);
    for (let r = 0; r < batch.numRows; r += 1) {
      const v = vector?.get(r);
      values[r] = column.kind === 'category' ? (v === null || v === undefined ? null : String(v)) : toNumber(v);
    }
    columns.set(column.index, values);
  }
  return values;
}

/** A column's values over the held rows. @param {View} v @param {ChartColumn} column */
function columnValues(v, column) {
  /** @type {any[]} */
  const out = [];
  for (const batch of v.batches) {
    const values = batchValues(batch, column);
    for (let i = 0; i < values.length; i += 1) out.push(values[i]);
  }
  return out;
}

/** @param {View} v @param {import('apache-arrow').Schema} schema */
function onSchema(v, schema) {
  if (v.closed || v.schema) return;
  const previousX = el.xSelect.selectedOptions[0]?.textContent;
  const previousY = el.ySelect.selectedOptions[0]?.textContent;
  v.schema = schema;
  v.columns = chartColumns(schema);
  const label = (/** @type {ChartColumn} */ c) => `${c.name} (${c.kind === 'category' ? 'bars' : c.kind === 'time' ? 'time' : 'scatter'})`;
  el.xSelect.replaceChildren(new Option('row number', ROW_INDEX), ...v.columns.map((c) => new Option(label(c), String(c.index))));
  const yColumns = v.columns.filter((c) => c.kind === 'int' || c.kind === 'float');
  el.ySelect.replaceChildren(new Option('count of rows', COUNT), ...yColumns.map((c) => new Option(c.name, String(c.index))));
  el.xSelect.value = defaultX(v.columns);
  el.ySelect.value = defaultY(v.columns);
  // A live stream that restarted with the same columns keeps the choice.
  for (const [select, text] of /** @type {const} */ ([[el.xSelect, previousX], [el.ySelect, previousY]])) {
    const same = [...select.options].find((o) => o.textContent === text);
    if (same && v.batchCount === 0 && v.dataset === view?.dataset && v.live) select.value = same.value;
  }
  rowTable.reset(schema, v.live);
  el.tableEmpty.hidden = true;
  el.chartEmpty.hidden = true;
  el.chartBox.hidden = false;
  el.chartControls.hidden = false;
  fillExploreControls(v);
  redraw(v);
  if (exploreActive()) ensureExplorer(v);
}

/** @param {View} v @param {import('apache-arrow').RecordBatch} batch */
function onBatch(v, batch) {
  if (v.closed) return;
  if (!v.schema) onSchema(v, batch.schema);
  v.batches.push(batch);
  v.heldRows += batch.numRows;
  if (v.live) {
    // Keep the newest LIVE_WINDOW_ROWS rows (whole batches).
    while (v.batches.length > 1 && v.heldRows - v.batches[0].numRows >= LIVE_WINDOW_ROWS) {
      v.heldRows -= /** @type {import('apache-arrow').RecordBatch} */ (v.batches.shift()).numRows;
    }
  }
  v.rows += batch.numRows;
  v.batchCount += 1;
  v.explorer?.update([batch]);
  updateCounters(v);
  scheduleRedraw(v);
}

/** A live view's stream was replaced: its window replaces the rows shown. @param {View} v */
function restartView(v) {
  v.schema = null;
  v.rows = 0;
  v.batchCount = 0;
  v.batches = [];
  v.heldRows = 0;
  // The new stream may have another schema: a fresh Perspective table follows it.
  v.explorer?.close();
  v.explorer = null;
  updateCounters(v);
}

/** @param {View} v */
function updateCounters(v) {
  el.rowCount.textContent = String(v.rows);
  el.batchCount.textContent = String(v.batchCount);
  const handle = v.handle;
  el.byteCount.textContent = formatBytes(handle?.bytesReceived ?? 0);
  const records = handle && 'flightInfo' in handle ? handle.flightInfo?.records ?? -1 : -1;
  el.rowTotal.textContent = records >= 0 ? ` of ${records}` : '';
  if (!v.live && records > 0) el.progressBar.style.width = `${Math.min(100, (100 * v.rows) / records).toFixed(1)}%`;
}

/** @param {View} v */
function scheduleRedraw(v) {
  if (v.redrawTimer) return;
  v.redrawTimer = setTimeout(() => {
    v.redrawTimer = null;
    redraw(v);
  }, CHART_REDRAW_MS);
}

/** @param {View} v */
function redraw(v) {
  if (v.closed || !v.schema) return;
  rowTable.setBatches(v.batches);
  rowTable.render();
  drawChart(v);
  updateExploreCount(v);
}

// ---------------------------------------------------------------- chart

/**
 * @typedef {object} Plot
 * @property {'line'|'bar'|'scatter'} type
 * @property {Array<{x: number, y: number}>|number[]} data
 * @property {string[]} [labels]   bar categories
 * @property {string} xTitle
 * @property {string} yTitle
 * @property {boolean} time        x is a time axis
 * @property {import('./chart-model.js').TimeStep|null} [step]  bucket size of a time axis
 * @property {number} [xMin]
 * @property {number} [xMax]
 * @property {string} note        what a point is, and any sampling
 */

/** @param {View} v @returns {Plot} */
function buildPlot(v) {
  const xKey = el.xSelect.value;
  const yKey = el.ySelect.value;
  const xCol = v.columns.find((c) => String(c.index) === xKey) ?? null;
  const yCol = yKey === COUNT ? null : v.columns.find((c) => String(c.index) === yKey) ?? null;
  const how = /** @type {import('./chart-model.js').Aggregate} */ (el.aggSelect.value);
  const ys = yCol ? columnValues(v, yCol) : null;
  const yName = yCol ? yCol.name : 'rows';
  const held = v.heldRows;
  const scope = v.live ? `the newest ${formatCount(held)} rows held (at most ${formatCount(LIVE_WINDOW_ROWS)})` : `all ${formatCount(held)} rows`;
  const aggregated = yCol ? `${how} of ${yCol.name}` : 'count of rows';
  el.aggSelect.disabled = !yCol || !xCol || (xCol.kind !== 'time' && xCol.kind !== 'category');
  el.aggLabel.classList.toggle('muted', el.aggSelect.disabled);

  if (xCol?.kind === 'time') {
    const { points, step, min, max } = bucketByTime(columnValues(v, xCol), ys, how, TIME_BUCKETS_MAX);
    return {
      type: 'line', data: points, xTitle: `${xCol.name} (UTC)`, yTitle: yCol ? `${how} of ${yName}` : 'rows', time: true, step, xMin: min, xMax: max,
      note: step ? `Each point: ${aggregated} per ${step.label} of ${xCol.name}, over ${scope}.` : '',
    };
  }
  if (xCol?.kind === 'category') {
    const { labels, values, hidden } = aggregateByCategory(columnValues(v, xCol), ys, how, CATEGORY_BARS_MAX);
    const rest = hidden ? ` The ${formatCount(hidden)} smallest categories ${how === 'count' || how === 'sum' || !yCol ? 'are summed as “other”' : 'are not shown'}.` : '';
    return {
      type: 'bar', data: values, labels, xTitle: xCol.name, yTitle: yCol ? `${how} of ${yName}` : 'rows', time: false,
      note: `Each bar: ${aggregated} per ${xCol.name}, over ${scope}.${rest}`,
    };
  }
  // Row number or a numeric column: one point per row, sampled above CHART_POINTS_MAX.
  const xs = xCol ? columnValues(v, xCol) : null;
  const stride = sampleStride(held, CHART_POINTS_MAX);
  /** @type {{x: number, y: number}[]} */
  const points = [];
  for (let i = 0; i < held; i += stride) {
    const x = xs ? xs[i] : i;
    const y = ys ? ys[i] : 1;
    if (x !== null && y !== null && x !== undefined && y !== undefined) points.push({ x, y });
  }
  const sampled = stride > 1
    ? ` Sampled: ${formatCount(points.length)} of ${formatCount(held)} rows shown (1 row in ${stride}), since more than ${formatCount(CHART_POINTS_MAX)} rows are held.`
    : '';
  return {
    type: xCol ? 'scatter' : 'line', data: points, xTitle: xCol ? xCol.name : v.live ? 'row (in the rows held)' : 'row', yTitle: yName, time: false,
    note: `Each point: one row.${sampled}`,
  };
}

/** @param {View} v */
function drawChart(v) {
  const plot = buildPlot(v);
  el.chartNote.textContent = plot.note;
  el.canvas.dataset.mode = plot.type;
  if (chart && /** @type {any} */ (chart.config).type !== plot.type) {
    chart.destroy();
    chart = null;
  }
  const dataset = {
    label: plot.yTitle,
    data: /** @type {any} */ (plot.data),
    borderColor: LINE_COLOR,
    backgroundColor: plot.type === 'bar' ? 'rgba(47, 111, 237, 0.75)' : 'rgba(47, 111, 237, 0.10)',
    borderWidth: plot.type === 'bar' ? 0 : 1.5,
    pointRadius: plot.type === 'scatter' ? 2 : plot.data.length > 200 ? 0 : 2.5,
    fill: plot.type === 'line',
    tension: 0,
  };
  if (!chart) {
    chart = new Chart(el.canvas, {
      type: plot.type,
      data: { labels: plot.labels, datasets: [dataset] },
      options: {
        animation: false,
        parsing: plot.type === 'bar' ? undefined : false,
        normalized: true,
        maintainAspectRatio: false,
        responsive: true,
        interaction: { mode: 'nearest', intersect: false, axis: 'x' },
        plugins: { legend: { display: true, position: 'top', align: 'end' }, tooltip: {} },
        scales: {
          x: { type: plot.type === 'bar' ? 'category' : 'linear', title: { display: true, text: '' }, ticks: { maxRotation: 0 }, grid: { color: GRID_COLOR } },
          y: { type: 'linear', beginAtZero: plot.type === 'bar', title: { display: true, text: '' }, grid: { color: GRID_COLOR } },
        },
      },
    });
  } else {
    chart.data.labels = plot.labels;
    chart.data.datasets[0] = /** @type {any} */ (dataset);
  }
  const options = /** @type {any} */ (chart.options);
  const x = options.scales.x;
  x.title.text = plot.xTitle;
  options.scales.y.title.text = plot.yTitle;
  if (plot.time && plot.step && plot.xMin !== undefined && plot.xMax !== undefined) {
    // Ticks on calendar boundaries (UTC), so a day's point sits on its day's tick;
    // half a bucket of room on each side keeps the first and last labels whole.
    const { ticks, step } = timeTicks(plot.xMin, plot.xMax, 8);
    const pad = plot.xMax > plot.xMin ? plot.step.approx / 2 : step.approx / 2;
    x.min = plot.xMin - pad;
    x.max = plot.xMax + pad;
    x.afterBuildTicks = (/** @type {any} */ scale) => {
      scale.ticks = ticks.map((value) => ({ value }));
    };
    x.ticks.autoSkip = false;
    x.ticks.callback = (/** @type {number} */ value) => formatTime(value, step);
    options.plugins.tooltip.callbacks = { title: (/** @type {any[]} */ items) => `${formatTime(items[0]?.parsed.x, plot.step ?? step)} (${plot.step?.label ?? ''} from)` };
  } else {
    delete x.min;
    delete x.max;
    delete x.afterBuildTicks;
    x.ticks.autoSkip = true;
    x.ticks.callback = undefined;
    options.plugins.tooltip.callbacks = {};
  }
  chart.update('none');
  el.canvas.dataset.points = String(plot.data.length);
}

// ---------------------------------------------------------------- explore

/** @type {Promise<typeof import('./explore.js')> | null} */
let exploreModule = null;

function exploreActive() {
  return el.tabExplore.getAttribute('aria-selected') === 'true';
}

/** @param {'overview'|'explore'} which */
function selectTab(which) {
  const explore = which === 'explore';
  el.tabOverview.setAttribute('aria-selected', String(!explore));
  el.tabExplore.setAttribute('aria-selected', String(explore));
  el.tabOverview.tabIndex = explore ? -1 : 0;
  el.tabExplore.tabIndex = explore ? 0 : -1;
  el.overviewPanel.hidden = explore;
  el.explorePanel.hidden = !explore;
  if (explore && view) ensureExplorer(view);
}

/** Load Perspective (once) and give the view its explore table. @param {View} v */
async function ensureExplorer(v) {
  if (v.closed || v.explorer || !v.schema) {
    if (!v.schema) el.exploreNote.textContent = 'The explore view opens when the dataset\'s first rows arrive.';
    return;
  }
  el.explorePanel.dataset.state = 'loading';
  el.exploreNote.textContent = 'Loading the explore view (Perspective, about 5 MB the first time)…';
  if (!exploreModule) {
    // Perspective's themes (explore.css, built from its packages) load with it.
    const link = document.createElement('link');
    link.rel = 'stylesheet';
    link.href = 'explore.css';
    document.head.append(link);
    exploreModule = import('./explore.js');
  }
  let module;
  try {
    module = await exploreModule;
  } catch (error) {
    exploreModule = null;
    el.explorePanel.dataset.state = 'error';
    el.exploreNote.textContent = `The explore view could not be loaded (${error}). Reload the page to try again.`;
    return;
  }
  if (v.closed || v.explorer || !v.schema || view !== v) return;
  const explorer = new module.Explorer(el.exploreHost, v.dataset);
  v.explorer = explorer;
  try {
    await explorer.load(v.schema, v.batches.slice(), LIVE_WINDOW_ROWS);
  } catch (error) {
    if (explorer.closed) return;
    el.explorePanel.dataset.state = 'error';
    el.exploreNote.textContent = `Perspective could not load “${v.dataset.name}”: ${error instanceof Error ? error.message : error}.`;
    return;
  }
  if (explorer.closed) return;
  el.explorePanel.dataset.state = 'ready';
  const dropped = explorer.dropped.length ? ` Left out (types Perspective does not read): ${explorer.dropped.join(', ')}.` : '';
  el.exploreNote.textContent = (v.live
    ? `Live: new rows are added as they arrive; the table keeps the newest ${formatCount(LIVE_WINDOW_ROWS)} rows.`
    : 'The whole dataset: sort, filter, group, split and pivot it with the column settings (the ⚙ button).') + dropped;
  applyExploreControls();
  updateExploreCount(v);
}

/** @param {View} v */
async function updateExploreCount(v) {
  const explorer = v.explorer;
  if (!explorer || explorer.closed || el.explorePanel.dataset.state !== 'ready') return;
  const rows = await explorer.size().catch(() => 0);
  if (explorer === v.explorer) showExploreRows(rows);
}

/**
 * The explore table's row count: formatted for reading, the plain number in
 * `data-rows` (tests read it; -1 while there is no table).
 * @param {number|null} rows
 */
function showExploreRows(rows) {
  el.exploreRows.textContent = rows === null ? '–' : formatCount(rows);
  el.exploreRows.dataset.rows = String(rows ?? -1);
}

/** @param {View} v */
function fillExploreControls(v) {
  const groupable = v.columns.filter((c) => c.kind === 'category' || c.kind === 'time');
  el.exploreGroup.replaceChildren(new Option('nothing', ''), ...groupable.map((c) => new Option(c.name, c.name)));
  showExploreRows(null);
  el.exploreHost.replaceChildren();
  el.explorePanel.dataset.state = 'idle';
}

function applyExploreControls() {
  const explorer = view?.explorer;
  if (!explorer || el.explorePanel.dataset.state !== 'ready') return;
  const group = el.exploreGroup.value;
  explorer.restore({ plugin: el.explorePlugin.value, group_by: group ? [group] : [] });
}

// ---------------------------------------------------------------- actions

/**
 * Take the previous dataset's chart and rows off the screen, so nothing under
 * a new title belongs to another dataset. With `reason`, the chart and table
 * say why they are empty.
 * @param {string} [reason]
 */
function clearData(reason = '') {
  chart?.destroy();
  chart = null;
  const ctx = el.canvas.getContext('2d');
  ctx?.clearRect(0, 0, el.canvas.width, el.canvas.height);
  el.canvas.dataset.points = '0';
  el.xSelect.replaceChildren();
  el.ySelect.replaceChildren();
  el.chartNote.textContent = '';
  rowTable.reset(null, false);
  el.chartEmpty.textContent = reason;
  el.chartEmpty.hidden = !reason;
  el.chartBox.hidden = Boolean(reason);
  el.chartControls.hidden = Boolean(reason);
  el.tableEmpty.textContent = reason;
  el.tableEmpty.hidden = !reason;
  el.exploreHost.replaceChildren();
  showExploreRows(null);
  el.exploreNote.textContent = reason;
}

/** @param {View} v */
function resetScreen(v) {
  el.title.textContent = v.dataset.name;
  el.kind.hidden = false;
  el.kind.textContent = v.live ? 'live' : 'query';
  el.kind.className = v.live ? 'badge badge-live' : 'badge';
  el.rowCount.textContent = '0';
  el.rowTotal.textContent = '';
  el.byteCount.textContent = '0 B';
  el.batchCount.textContent = '0';
  el.progressBar.style.width = '0';
  el.progressBar.className = v.live ? 'progress-bar live' : 'progress-bar';
  clearData();
  el.content.dataset.phase = 'loading';
  for (const li of el.datasets.querySelectorAll('li')) {
    li.classList.toggle('active', /** @type {HTMLElement} */ (li).dataset.name === v.dataset.name);
  }
}

/** @param {import('./client.js').DatasetInfo} dataset */
async function openDataset(dataset) {
  if (!client) return;
  view?.close();
  const v = new View(dataset);
  view = v;
  resetScreen(v);
  if (dataset.live) {
    setStatus(`Subscribing to live dataset “${dataset.name}”…`, 'info');
    v.handle = client.subscribe(dataset.name, (batch) => onBatch(v, batch), {
      onSchema: (schema) => onSchema(v, schema),
      onStart: (sub) => {
        if (v.closed) return;
        el.content.dataset.phase = 'live';
        setStatus(sub.restarts > 0
          ? `Live: “${dataset.name}” is back; following it again (its recent rows replace the earlier ones).`
          : `Live: following “${dataset.name}”.`, 'ok');
      },
      onWaiting: () => {
        if (v.closed) return;
        el.content.dataset.phase = 'waiting';
        setStatus(`The connector serving “${dataset.name}” went away; this view resumes by itself when it is back.`, 'warn', 'live_waiting');
      },
      onRestart: () => {
        // A new stream: its window (recent rows) replaces what was shown.
        if (!v.closed) restartView(v);
      },
      onGap: (gap) => {
        if (!v.closed) setStatus(`Live: this page fell behind and skipped ${gap.skippedFrames} frame(s) of “${dataset.name}”.`, 'warn', 'gap');
      },
      onError: (error, sub) => {
        if (v.closed) return;
        if (sub.done) el.content.dataset.phase = 'error';
        if (!sub.done && (error.code === 'connection_lost' || error.code === 'heartbeat_timeout' || error.code === 'going_away')) {
          setStatus('Connection lost; reconnecting…', 'warn', error.code);
        } else {
          showError(error, dataset.name);
          if (sub.done) failView(v);
        }
      },
    });
    return;
  }

  setStatus(`Querying “${dataset.name}”…`, 'info');
  const q = client.query(dataset.name);
  v.handle = q;
  q.flightInfoReady().then(() => !v.closed && updateCounters(v));
  try {
    el.content.dataset.phase = 'streaming';
    for await (const batch of q) {
      if (v.closed) break;
      if (!v.schema && q.schema) onSchema(v, q.schema);
      onBatch(v, batch);
    }
    if (v.closed) return;
    if (!v.schema && q.schema) onSchema(v, q.schema);
    if (v.redrawTimer) clearTimeout(v.redrawTimer);
    v.redrawTimer = null;
    redraw(v);
    updateCounters(v);
    el.progressBar.style.width = '100%';
    el.progressBar.classList.add('done');
    el.content.dataset.phase = 'done';
    const seconds = ((performance.now() - v.startedAt) / 1000).toFixed(2);
    const compressed = q.compression ? `, ${q.compression}-compressed` : '';
    setStatus(`Loaded ${v.rows} rows of “${dataset.name}” (${formatBytes(q.bytesReceived)}${compressed}) in ${seconds} s.`, 'ok');
  } catch (error) {
    if (v.closed) return;
    el.content.dataset.phase = 'error';
    updateCounters(v);
    if (error instanceof VolleyError && ['connection_lost', 'heartbeat_timeout', 'going_away'].includes(error.code)) {
      v.lostConnection = true;
      setStatus('Connection lost; reconnecting…', 'warn', error.code);
      return;
    }
    showError(error, dataset.name);
    failView(v);
  }
}

/** A query or subscription failed for good: no stale rows or chart stay under its title. @param {View} v */
function failView(v) {
  if (v.closed) return;
  el.content.dataset.phase = 'error';
  v.explorer?.close();
  v.explorer = null;
  clearData(`No data from “${v.dataset.name}”: the ${v.live ? 'subscription' : 'query'} failed (the message at the top says why).`);
}

function renderDatasets() {
  if (datasets.length === 0) {
    const li = document.createElement('li');
    li.className = 'empty';
    li.textContent = client ? 'No datasets online' : 'Not connected';
    el.datasets.replaceChildren(li);
    return;
  }
  el.datasets.replaceChildren(
    ...datasets.map((d) => {
      const li = document.createElement('li');
      li.dataset.testid = 'dataset';
      li.dataset.name = d.name;
      li.dataset.live = String(d.live);
      li.tabIndex = 0;
      const name = document.createElement('span');
      name.className = 'name';
      name.textContent = d.name;
      li.append(name);
      if (d.live) {
        const badge = document.createElement('span');
        badge.className = 'badge badge-live';
        badge.textContent = 'live';
        li.append(badge);
      }
      if (view?.dataset.name === d.name) li.classList.add('active');
      li.addEventListener('click', () => openDataset(d));
      li.addEventListener('keydown', (e) => {
        if (e.key === 'Enter' || e.key === ' ') openDataset(d);
      });
      return li;
    }),
  );
}

/** @param {string} state */
function showConnState(state) {
  el.connState.textContent = state === 'open' ? 'connected' : state;
  el.connState.className = `pill pill-${state}`;
}

async function refreshDatasets() {
  if (!client) return;
  datasets = await client.list();
  renderDatasets();
}

/**
 * The datasets a session token allows (its `permisos` claim), read from the
 * token itself: not verified here (the gateway does that), only to say why
 * the list is empty. `null` when the token cannot be read.
 * @param {string} session
 * @returns {string[]|null}
 */
function allowedDatasets(session) {
  try {
    const part = session.split('.')[1] ?? '';
    const base64 = part.replace(/-/g, '+').replace(/_/g, '/') + '='.repeat((4 - (part.length % 4)) % 4);
    const claims = JSON.parse(atob(base64));
    return Array.isArray(claims.permisos) ? claims.permisos.map(String) : null;
  } catch {
    return null;
  }
}

/**
 * Why the dataset list is empty, in words: the session may read nothing, or
 * nothing it may read is online now (the list updates when a connector comes).
 * @param {string} session
 */
function emptyListMessage(session) {
  const allowed = allowedDatasets(session);
  if (allowed !== null && allowed.length === 0) {
    return 'Connected, but this session may read no dataset. Ask for a link that grants the datasets you need.';
  }
  return 'Connected. No connector serving your datasets is online right now; they appear here as soon as one connects.';
}

/** @param {string} session */
async function connectSession(session) {
  view?.close();
  view = null;
  client?.close();
  client = null;
  datasets = [];
  renderDatasets();
  if (!session) {
    setStatus('Enter a session token to connect.', 'info');
    return;
  }
  setStatus('Connecting…', 'info');
  showConnState('connecting');
  /** @type {import('./client.js').VolleyClient} */
  let c;
  try {
    c = await connect({ session, protocol: 2 });
  } catch (error) {
    showConnState('closed');
    showError(error);
    return;
  }
  client = c;
  showConnState(c.state);
  c.on('state', (/** @type {string} */ state) => {
    if (client === c) showConnState(state);
  });
  c.on('error', (/** @type {VolleyError} */ error) => {
    if (client !== c) return;
    if (error.fatal || c.state === 'closed') {
      showError(error, view?.dataset.name);
      if (view) el.content.dataset.phase = 'error';
    } else if (c.state === 'reconnecting') {
      setStatus(`Connection lost (${error.code}); reconnecting…`, 'warn', error.code);
    }
  });
  c.on('datasets', (/** @type {{name: string, live: boolean}[]} */ list) => {
    if (client !== c) return;
    const had = datasets.length;
    datasets = list;
    renderDatasets();
    const open = view?.dataset.name;
    if (list.length === 0) {
      setStatus(emptyListMessage(el.sessionInput.value.trim()), 'warn');
    } else if (view?.handle && 'waiting' in view.handle && view.handle.waiting) {
      // The waiting message already says the connector went away and that the view resumes.
    } else if (open && !list.some((d) => d.name === open)) {
      setStatus(`“${open}” went offline: its connector is not connected. It comes back in this list when the connector does.`, 'warn');
    } else if (had === 0 && list.length > 0) {
      setStatus(`${list.length} dataset(s) available.`, 'ok');
      if (!view) openDataset(list[0]);
    }
  });
  c.on('queued', (/** @type {{queryId: string, dataset: string, position: number|null}} */ info) => {
    if (!view || view.closed || view.handle?.queryId !== info.queryId) return;
    const place = info.position ? ` It is number ${info.position} in line` : '';
    setStatus(
      `Waiting for a free stream: every connector serving “${info.dataset}” is busy with other queries.${place}; it starts by itself.`,
      'info',
      'queued',
    );
  });
  c.on('reconnected', async () => {
    if (client !== c) return;
    setStatus('Reconnected.', 'ok');
    await refreshDatasets().catch(() => {});
    if (view && !view.live && view.lostConnection) openDataset(view.dataset);
  });
  const hello = /** @type {any} */ (c.hello);
  el.who.textContent = hello ? `${hello.user ?? ''} · ${hello.tenant ?? ''}` : c.level === 1 ? 'protocol level 1' : '';
  try {
    await refreshDatasets();
  } catch (error) {
    showError(error);
    return;
  }
  if (datasets.length === 0) {
    setStatus(emptyListMessage(session), 'warn');
    return;
  }
  setStatus(`Connected. ${datasets.length} dataset(s) available.`, 'ok');
  // Open the first dataset so the first screen shows data.
  openDataset(datasets[0]);
}

/**
 * The session token stays out of the address bar (where history, screenshots
 * and shared links would keep it): a `?session=` link is read once and taken
 * out of the URL, and the token is kept for this tab only (sessionStorage),
 * so a reload reconnects.
 */
const SESSION_KEY = 'volley.session';

/** @param {string} session */
function rememberSession(session) {
  try {
    if (session) sessionStorage.setItem(SESSION_KEY, session);
    else sessionStorage.removeItem(SESSION_KEY);
  } catch {
    // Storage refused (private mode, policy): a reload then asks again.
  }
}

function initialSessionFromPage() {
  const url = new URL(location.href);
  const fromLink = url.searchParams.get('session');
  if (fromLink !== null) {
    url.searchParams.delete('session');
    history.replaceState(null, '', url);
    rememberSession(fromLink);
    return fromLink;
  }
  try {
    return sessionStorage.getItem(SESSION_KEY) ?? '';
  } catch {
    return '';
  }
}

el.form.addEventListener('submit', (event) => {
  event.preventDefault();
  const session = el.sessionInput.value.trim();
  rememberSession(session);
  connectSession(session);
});
for (const select of [el.xSelect, el.ySelect, el.aggSelect]) select.addEventListener('change', () => view && redraw(view));
el.tabOverview.addEventListener('click', () => selectTab('overview'));
el.tabExplore.addEventListener('click', () => selectTab('explore'));
for (const tab of [el.tabOverview, el.tabExplore]) {
  tab.addEventListener('keydown', (event) => {
    if (event.key === 'ArrowRight' || event.key === 'ArrowLeft') {
      const next = tab === el.tabOverview ? el.tabExplore : el.tabOverview;
      selectTab(next === el.tabExplore ? 'explore' : 'overview');
      next.focus();
    }
  });
}
el.exploreGroup.addEventListener('change', applyExploreControls);
el.explorePlugin.addEventListener('change', applyExploreControls);
el.exploreSettings.addEventListener('click', async () => {
  const viewer = /** @type {any} */ (el.exploreHost.querySelector('perspective-viewer'));
  if (viewer) await viewer.toggleConfig();
});
el.exploreExport.addEventListener('click', async () => {
  const explorer = view?.explorer;
  if (!explorer) return;
  const csv = await explorer.csv();
  const link = document.createElement('a');
  link.href = URL.createObjectURL(new Blob([csv], { type: 'text/csv' }));
  link.download = `${view?.dataset.name ?? 'data'}.csv`;
  link.click();
  setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
});
window.addEventListener('beforeunload', () => client?.close());

const initialSession = initialSessionFromPage();
el.sessionInput.value = initialSession;
connectSession(initialSession);
