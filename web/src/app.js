// @ts-check
/**
 * The Volley dashboard: session → dataset list → query (or live subscription)
 * → first rows, a chart, row/byte counters and a progress bar.
 */
import { DataType } from 'apache-arrow';
import {
  Chart,
  LineController,
  LineElement,
  PointElement,
  LinearScale,
  Tooltip,
  Legend,
  Filler,
} from 'chart.js';
import { connect, VolleyError } from './client.js';

Chart.register(LineController, LineElement, PointElement, LinearScale, Tooltip, Legend, Filler);
// Colours follow the page's theme (style.css: light, or dark under
// prefers-color-scheme: dark).
const themeCss = getComputedStyle(document.documentElement);
Chart.defaults.color = themeCss.getPropertyValue('--muted').trim() || Chart.defaults.color;
const GRID_COLOR = themeCss.getPropertyValue('--grid').trim() || '#eef1f5';

/** Rows shown in the table. */
const TABLE_ROWS_MAX = 20;
/** A query keeps at most this many chart points: beyond it, every other point is dropped and the sampling stride doubles. */
const QUERY_CHART_POINTS_MAX = 4000;
/** A live chart keeps the last N points. */
const LIVE_CHART_POINTS_MAX = 500;
/** While a query streams the chart is redrawn at most this often. */
const CHART_REDRAW_MS = 250;
/** Text of the x option that plots against the row number. */
const ROW_INDEX = '__row__';

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
  chartNote: $('chart-note'),
  canvas: /** @type {HTMLCanvasElement} */ ($('chart-canvas')),
  table: /** @type {HTMLTableElement} */ ($('rows-table')),
  chartEmpty: $('chart-empty'),
  chartBox: /** @type {HTMLElement} */ (document.querySelector('.chart-box')),
  chartControls: /** @type {HTMLElement} */ (document.querySelector('.chart-controls')),
  tableEmpty: $('table-empty'),
  content: /** @type {HTMLElement} */ (document.querySelector('.content')),
};

/** @type {import('./client.js').VolleyClient | null} */
let client = null;
/** @type {Chart | null} */
let chart = null;
/** @type {View | null} */
let view = null;
/** @type {import('./client.js').DatasetInfo[]} */
let datasets = [];

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
function formatBytes(n) {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return `${v.toFixed(v < 10 ? 2 : 1)} ${units[i]}`;
}

/** @param {number} ms */
function formatTime(ms, spanMs = 0) {
  const d = new Date(ms);
  if (Number.isNaN(d.getTime())) return String(ms);
  const iso = d.toISOString();
  if (spanMs && spanMs < 60_000) return iso.slice(11, 21);
  if (spanMs && spanMs < 2 * 86_400_000) return iso.slice(11, 19);
  if (spanMs && spanMs > 365 * 86_400_000) return iso.slice(0, 7);
  return iso.slice(0, 10);
}

/** @param {any} value @param {import('apache-arrow').DataType} type */
function formatCell(value, type) {
  if (value === null || value === undefined) return '∅';
  if (DataType.isTimestamp(type)) return new Date(value).toISOString().replace('T', ' ').replace('Z', '');
  if (DataType.isDate(type)) return new Date(value).toISOString().slice(0, 10);
  if (typeof value === 'number') return Number.isInteger(value) ? String(value) : value.toLocaleString(undefined, { maximumFractionDigits: 4 });
  if (typeof value === 'bigint') return value.toString();
  if (typeof value === 'string') return value.length > 80 ? `${value.slice(0, 77)}…` : value;
  if (value instanceof Uint8Array) return `0x${Array.from(value.slice(0, 16), (b) => b.toString(16).padStart(2, '0')).join('')}${value.length > 16 ? '…' : ''}`;
  try {
    const text = JSON.stringify(typeof value.toJSON === 'function' ? value.toJSON() : value, (_k, v) => (typeof v === 'bigint' ? v.toString() : v));
    return text.length > 80 ? `${text.slice(0, 77)}…` : text;
  } catch {
    return String(value);
  }
}

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
 * @property {'time'|'int'|'float'} kind
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
    /** Sampled values per chart column (same positions as `rowIndex`). @type {Map<number, Array<number|null>>} */
    this.values = new Map();
    /** @type {number[]} */
    this.rowIndex = [];
    /** Query sampling stride (a power of two). */
    this.stride = 1;
    this.rows = 0;
    this.batches = 0;
    /** @type {any[][]} */
    this.tableRows = [];
    this.closed = false;
    this.startedAt = performance.now();
    /** @type {any} */
    this.redrawTimer = null;
    this.lostConnection = false;
  }

  close() {
    this.closed = true;
    if (this.redrawTimer) clearTimeout(this.redrawTimer);
    const handle = this.handle;
    this.handle = null;
    handle?.cancel();
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
    else if (DataType.isFloat(type)) columns.push({ index, name: field.name, kind: 'float' });
  });
  return columns;
}

/** Default x: the first timestamp/date column, else the first int column, else the row number. @param {ChartColumn[]} columns */
function defaultX(columns) {
  const time = columns.find((c) => c.kind === 'time');
  if (time) return String(time.index);
  const int = columns.find((c) => c.kind === 'int');
  if (int) return String(int.index);
  return ROW_INDEX;
}

/** Default y: the first float column not on x, else the first numeric one. @param {ChartColumn[]} columns @param {string} x */
function defaultY(columns, x) {
  const numeric = columns.filter((c) => c.kind !== 'time' && String(c.index) !== x);
  const pick = numeric.find((c) => c.kind === 'float') ?? numeric[0];
  return pick ? String(pick.index) : '';
}

/** @param {View} v @param {import('apache-arrow').Schema} schema */
function onSchema(v, schema) {
  if (v.closed || v.schema) return;
  v.schema = schema;
  v.columns = chartColumns(schema);
  for (const c of v.columns) v.values.set(c.index, []);
  const x = defaultX(v.columns);
  el.xSelect.replaceChildren(
    new Option('row number', ROW_INDEX),
    ...v.columns.map((c) => new Option(`${c.name} (${c.kind})`, String(c.index))),
  );
  el.xSelect.value = x;
  const yOptions = v.columns.filter((c) => c.kind !== 'time');
  el.ySelect.replaceChildren(...yOptions.map((c) => new Option(`${c.name} (${c.kind})`, String(c.index))));
  el.ySelect.value = defaultY(v.columns, x);
  el.chartNote.textContent = yOptions.length === 0 ? 'no numeric column to plot' : '';

  const head = document.createElement('tr');
  for (const field of schema.fields) {
    const th = document.createElement('th');
    th.textContent = field.name;
    const type = document.createElement('span');
    type.className = 'type';
    type.textContent = String(field.type);
    th.append(type);
    head.append(th);
  }
  el.table.tHead?.replaceChildren(head);
  el.table.tBodies[0].replaceChildren();
  resetChart(v);
}

/** @param {View} v @param {import('apache-arrow').RecordBatch} batch */
function onBatch(v, batch) {
  if (v.closed) return;
  if (!v.schema) onSchema(v, batch.schema);
  const first = v.rows;
  const n = batch.numRows;

  // Table: the first rows only.
  if (v.tableRows.length < TABLE_ROWS_MAX) {
    const take = Math.min(n, TABLE_ROWS_MAX - v.tableRows.length);
    const body = el.table.tBodies[0];
    for (let r = 0; r < take; r += 1) {
      const tr = document.createElement('tr');
      const cells = [];
      for (let c = 0; c < batch.numCols; c += 1) {
        const vector = batch.getChildAt(c);
        const type = batch.schema.fields[c].type;
        const value = vector?.get(r);
        cells.push(value);
        const td = document.createElement('td');
        td.textContent = formatCell(value, type);
        if ((typeof value === 'number' || typeof value === 'bigint') && !DataType.isTimestamp(type) && !DataType.isDate(type)) td.className = 'num';
        if (value === null || value === undefined) td.classList.add('muted');
        tr.append(td);
      }
      v.tableRows.push(cells);
      body.append(tr);
    }
  }

  // Chart columns.
  const vectors = v.columns.map((c) => batch.getChildAt(c.index));
  for (let r = 0; r < n; r += 1) {
    const row = first + r;
    if (!v.live && row % v.stride !== 0) continue;
    v.rowIndex.push(row);
    for (let k = 0; k < v.columns.length; k += 1) {
      /** @type {Array<number|null>} */ (v.values.get(v.columns[k].index)).push(toNumber(vectors[k]?.get(r)));
    }
  }
  if (v.live) {
    const excess = v.rowIndex.length - LIVE_CHART_POINTS_MAX;
    if (excess > 0) {
      v.rowIndex.splice(0, excess);
      for (const values of v.values.values()) values.splice(0, excess);
    }
  } else {
    while (v.rowIndex.length > QUERY_CHART_POINTS_MAX) {
      // Uniform downsampling: keep every other kept row, double the stride.
      v.stride *= 2;
      const keep = (/** @type {number} */ _x, /** @type {number} */ i) => v.rowIndex[i] % v.stride === 0;
      const mask = v.rowIndex.map(keep);
      v.rowIndex = v.rowIndex.filter((_x, i) => mask[i]);
      for (const [key, values] of v.values) v.values.set(key, values.filter((_x, i) => mask[i]));
    }
  }

  v.rows += n;
  v.batches += 1;
  updateCounters(v);
  if (v.live) redraw(v);
  else scheduleRedraw(v);
}

/** A live view's stream was replaced: forget its rows, keep the screen's layout. @param {View} v */
function restartView(v) {
  v.schema = null;
  v.rows = 0;
  v.batches = 0;
  v.rowIndex = [];
  v.values = new Map();
  v.tableRows = [];
  el.table.tBodies[0].replaceChildren();
  updateCounters(v);
}

/** @param {View} v */
function updateCounters(v) {
  el.rowCount.textContent = String(v.rows);
  el.batchCount.textContent = String(v.batches);
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
function xColumn(v) {
  const x = el.xSelect.value;
  return x === ROW_INDEX ? null : v.columns.find((c) => String(c.index) === x) ?? null;
}

/** Create the chart for a view (once); later updates reuse it. @param {View} v */
function resetChart(v) {
  chart?.destroy();
  const xCol = xColumn(v);
  chart = new Chart(el.canvas, {
    type: 'line',
    data: { datasets: [] },
    options: {
      animation: false,
      parsing: false,
      normalized: true,
      maintainAspectRatio: false,
      responsive: true,
      interaction: { mode: 'nearest', intersect: false, axis: 'x' },
      plugins: {
        legend: { display: true, position: 'top', align: 'end' },
        tooltip: {
          callbacks: {
            title: (items) => {
              const x = items[0]?.parsed.x;
              const col = xColumn(v);
              return col?.kind === 'time' && typeof x === 'number' ? new Date(x).toISOString() : String(x);
            },
          },
        },
      },
      scales: {
        x: {
          type: 'linear',
          title: { display: true, text: xCol ? xCol.name : 'row' },
          ticks: { maxTicksLimit: 8, maxRotation: 0 },
          grid: { color: GRID_COLOR },
        },
        y: { type: 'linear', title: { display: true, text: '' }, grid: { color: GRID_COLOR } },
      },
    },
  });
  redraw(v);
}

/** Rebuild the points from the kept columns and update the chart in place. @param {View} v */
function redraw(v) {
  if (!chart || v.closed) return;
  const xCol = xColumn(v);
  const yKey = el.ySelect.value;
  const yCol = v.columns.find((c) => String(c.index) === yKey);
  const xs = xCol ? v.values.get(xCol.index) ?? [] : v.rowIndex;
  const ys = yCol ? v.values.get(yCol.index) ?? [] : [];
  /** @type {{x: number, y: number}[]} */
  const points = [];
  for (let i = 0; i < ys.length; i += 1) {
    const x = xs[i];
    const y = ys[i];
    if (x !== null && y !== null && x !== undefined && y !== undefined) points.push({ x, y });
  }
  // Sort by x so a line over an unsorted column stays readable.
  if (points.length > 1 && points.some((p, i) => i > 0 && p.x < points[i - 1].x)) points.sort((a, b) => a.x - b.x);

  const dataset = chart.data.datasets[0];
  if (dataset) {
    dataset.data = points;
    dataset.label = yCol?.name ?? '';
  } else {
    chart.data.datasets.push({
      label: yCol?.name ?? '',
      data: points,
      borderColor: '#2f6fed',
      backgroundColor: 'rgba(47, 111, 237, 0.10)',
      borderWidth: 1.5,
      pointRadius: points.length > 200 ? 0 : 2,
      fill: true,
      tension: 0.15,
    });
  }
  const ds0 = chart.data.datasets[0];
  /** @type {any} */ (ds0).pointRadius = points.length > 200 ? 0 : 2;
  const scales = /** @type {any} */ (chart.options.scales);
  const span = points.length > 1 ? points[points.length - 1].x - points[0].x : 0;
  scales.x.title.text = xCol ? xCol.name : 'row';
  scales.x.ticks.callback = xCol?.kind === 'time' ? (/** @type {number} */ value) => formatTime(value, span) : undefined;
  scales.y.title.text = yCol?.name ?? '';
  chart.update('none');
  el.canvas.dataset.points = String(points.length);
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
  el.table.tHead?.replaceChildren();
  el.table.tBodies[0].replaceChildren();
  el.chartEmpty.textContent = reason;
  el.chartEmpty.hidden = !reason;
  el.chartBox.hidden = Boolean(reason);
  el.chartControls.hidden = Boolean(reason);
  el.tableEmpty.textContent = reason;
  el.tableEmpty.hidden = !reason;
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
    const sampled = v.stride > 1 ? ` The chart samples 1 row in ${v.stride}.` : '';
    const compressed = q.compression ? `, ${q.compression}-compressed` : '';
    setStatus(`Loaded ${v.rows} rows of “${dataset.name}” (${formatBytes(q.bytesReceived)}${compressed}) in ${seconds} s.${sampled}`, 'ok');
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
el.xSelect.addEventListener('change', () => view && redraw(view));
el.ySelect.addEventListener('change', () => view && redraw(view));
window.addEventListener('beforeunload', () => client?.close());

const initialSession = initialSessionFromPage();
el.sessionInput.value = initialSession;
connectSession(initialSession);
