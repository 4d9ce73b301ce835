// @ts-check
/**
 * Latency page: polls the gateway's `GET /metrics.json` and draws the
 * percentile distribution (x on a "nines" scale) of relay latency and time to
 * first byte, plus the p50/p99 relay latency time series.
 */
import { Chart, LineController, LineElement, PointElement, LinearScale, LogarithmicScale, Tooltip, Legend } from 'chart.js';
import { formatBytes } from './format.js';

Chart.register(LineController, LineElement, PointElement, LinearScale, LogarithmicScale, Tooltip, Legend);
// Colours follow the page's theme (style.css: light, or dark under
// prefers-color-scheme: dark).
const themeCss = getComputedStyle(document.documentElement);
Chart.defaults.color = themeCss.getPropertyValue('--muted').trim() || Chart.defaults.color;
const GRID_COLOR = themeCss.getPropertyValue('--grid').trim() || '#eef1f5';

/** Poll interval. */
const POLL_MS = 1000;
/** Per-request timeout, so a stuck request cannot stall the poll loop. */
const FETCH_TIMEOUT_MS = 3000;
/** The x position of 100 % (the max): 1 − p/100 is clamped to 10^-X_MAX. */
const NINES_MAX = 5;
/** Percentile ticks of the distribution chart. */
const PERCENTILE_TICKS = [0, 50, 90, 99, 99.9, 99.99, 100];
/** Histograms drawn on the distribution chart: key → label and colour. */
const CURVES = [
  { key: 'relay_latency_us', label: 'relay latency', color: '#2f6fed' },
  { key: 'ttfb_us', label: 'time to first byte', color: '#dd6b20' },
];

/** @param {string} id */
const $ = (id) => /** @type {HTMLElement} */ (document.getElementById(id));

/**
 * x = −log10(1 − p/100): 50 → 0.30, 90 → 1, 99 → 2, 99.9 → 3 …; 100 → NINES_MAX.
 * @param {number} percentile
 */
export function ninesX(percentile) {
  const tail = Math.max(1 - percentile / 100, 10 ** -NINES_MAX);
  return -Math.log10(tail);
}

/** @param {number} x */
function ninesLabel(x) {
  for (const p of PERCENTILE_TICKS) {
    if (Math.abs(ninesX(p) - x) < 1e-9) return p === 100 ? 'max' : String(p);
  }
  return '';
}

/** @param {number} us */
function formatMicros(us) {
  if (us == null || Number.isNaN(us)) return '–';
  if (us >= 1_000_000) return `${(us / 1_000_000).toFixed(2)} s`;
  if (us >= 1000) return `${(us / 1000).toFixed(2)} ms`;
  return `${Math.round(us)} µs`;
}

/** @param {number} ms */
function formatUptime(ms) {
  const s = Math.floor(ms / 1000);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return h > 0 ? `${h} h ${m} min` : m > 0 ? `${m} min ${s % 60} s` : `${s} s`;
}

/**
 * @param {string} text
 * @param {'info'|'ok'|'warn'|'error'} level
 */
function setStatus(text, level) {
  const status = $('status');
  status.textContent = text;
  status.className = `status status-${level}`;
}

const distChart = new Chart(/** @type {HTMLCanvasElement} */ ($('dist-canvas')), {
  type: 'line',
  data: {
    datasets: CURVES.map((c) => ({
      label: c.label,
      data: [],
      borderColor: c.color,
      backgroundColor: c.color,
      borderWidth: 2,
      pointRadius: 3,
      tension: 0,
    })),
  },
  options: {
    animation: false,
    parsing: false,
    maintainAspectRatio: false,
    interaction: { mode: 'nearest', intersect: false },
    plugins: {
      legend: { position: 'top', align: 'end' },
      tooltip: {
        callbacks: {
          title: (items) => {
            const raw = /** @type {any} */ (items[0]?.raw);
            return raw ? `p${raw.p}` : '';
          },
          label: (item) => `${item.dataset.label}: ${formatMicros(item.parsed.y ?? NaN)}`,
        },
      },
    },
    scales: {
      x: {
        type: 'linear',
        min: 0,
        max: NINES_MAX,
        title: { display: true, text: 'percentile' },
        afterBuildTicks: (axis) => {
          axis.ticks = PERCENTILE_TICKS.map((p) => ({ value: ninesX(p) }));
        },
        ticks: { callback: (value) => ninesLabel(Number(value)), autoSkip: false, maxRotation: 0 },
        grid: { color: GRID_COLOR },
      },
      // Log scale: relay latency (µs) and TTFB (ms) differ by orders of magnitude.
      y: {
        type: 'logarithmic',
        title: { display: true, text: 'µs (log scale)' },
        // Label powers of ten only; the others crowd the axis.
        ticks: { callback: (value) => (Number.isInteger(Math.log10(Number(value))) ? Number(value).toLocaleString() : '') },
        grid: { color: GRID_COLOR },
      },
    },
  },
});

const seriesChart = new Chart(/** @type {HTMLCanvasElement} */ ($('series-canvas')), {
  type: 'line',
  data: {
    datasets: [
      { label: 'relay p50', data: [], borderColor: '#2f6fed', backgroundColor: '#2f6fed', borderWidth: 2, pointRadius: 0 },
      { label: 'relay p99', data: [], borderColor: '#c53030', backgroundColor: '#c53030', borderWidth: 2, pointRadius: 0 },
    ],
  },
  options: {
    animation: false,
    parsing: false,
    maintainAspectRatio: false,
    interaction: { mode: 'nearest', intersect: false, axis: 'x' },
    plugins: {
      legend: { position: 'top', align: 'end' },
      tooltip: {
        callbacks: {
          title: (items) => new Date(items[0]?.parsed.x ?? 0).toLocaleTimeString(),
          label: (item) => `${item.dataset.label}: ${formatMicros(item.parsed.y ?? NaN)}`,
        },
      },
    },
    scales: {
      x: {
        type: 'linear',
        title: { display: true, text: 'time' },
        ticks: { callback: (value) => new Date(Number(value)).toISOString().slice(11, 19), maxTicksLimit: 8, maxRotation: 0 },
        grid: { color: GRID_COLOR },
      },
      y: { type: 'linear', beginAtZero: true, title: { display: true, text: 'µs' }, grid: { color: GRID_COLOR } },
    },
  },
});

/**
 * Points of one histogram: its `distribution` pairs, or the named percentiles.
 * @param {any} histogram
 * @returns {{x: number, y: number, p: number}[]}
 */
function distributionPoints(histogram) {
  if (!histogram || !histogram.count) return [];
  /** @type {Array<[number, number]>} */
  let pairs = Array.isArray(histogram.distribution) ? histogram.distribution : [];
  if (pairs.length === 0) {
    pairs = [[0, histogram.min], [50, histogram.p50], [90, histogram.p90], [99, histogram.p99], [99.9, histogram.p999], [100, histogram.max]];
  }
  return pairs
    // y > 0: the y axis is logarithmic.
    .filter((pair) => Array.isArray(pair) && Number.isFinite(pair[0]) && Number.isFinite(pair[1]) && pair[1] > 0)
    .map(([p, value]) => ({ x: ninesX(p), y: value, p }))
    .sort((a, b) => a.x - b.x);
}

/** @param {any} metrics */
function render(metrics) {
  $('m-uptime').textContent = formatUptime(metrics.uptime_ms ?? 0);
  $('m-workers').textContent = String(metrics.workers ?? '–');
  $('m-connectors').textContent = String(metrics.connectors ?? '–');
  $('m-sessions').textContent = String(metrics.sessions ?? '–');
  const histograms = metrics.histograms ?? {};
  const relay = histograms.relay_latency_us;
  const ttfb = histograms.ttfb_us;
  $('m-relay').textContent = relay?.count ? `${formatMicros(relay.p50)} / ${formatMicros(relay.p99)}` : '–';
  // The numbers shown, in µs, for tests (`data-count` 0: none yet).
  Object.assign($('m-relay').dataset, { count: String(relay?.count ?? 0), p50: String(relay?.p50 ?? 0), p99: String(relay?.p99 ?? 0) });
  $('m-ttfb').textContent = ttfb?.count ? `${formatMicros(ttfb.p50)} / ${formatMicros(ttfb.p99)}` : '–';
  // The admission queue (PROTOCOL.md §5.1): waiting now / ever waited; the
  // waits themselves are the queue_wait_ms histogram in the table below.
  $('m-queued').textContent = `${metrics.queued_queries ?? 0} / ${metrics.counters?.queries_queued ?? 0}`;
  // Shared queries (§5.1): queries that joined an identical running one
  // (each an upstream stream saved; of them, answered from a kept one) and
  // what the shared logs hold now.
  const counters = metrics.counters ?? {};
  $('m-shared').textContent =
    `${counters.shared_joins ?? 0} saved (${counters.shared_reuses ?? 0} reused) · ${formatBytes(metrics.share_log_bytes ?? 0)} held`;

  CURVES.forEach((c, i) => {
    distChart.data.datasets[i].data = distributionPoints(histograms[c.key]);
  });
  distChart.update('none');

  const series = Array.isArray(metrics.series) ? metrics.series : [];
  seriesChart.data.datasets[0].data = series.map((/** @type {any} */ s) => ({ x: s.t_ms, y: s.relay_p50_us }));
  seriesChart.data.datasets[1].data = series.map((/** @type {any} */ s) => ({ x: s.t_ms, y: s.relay_p99_us }));
  seriesChart.update('none');

  const table = /** @type {HTMLTableElement} */ ($('hist-table'));
  const columns = ['count', 'min', 'p50', 'p90', 'p99', 'p999', 'max', 'mean'];
  const head = document.createElement('tr');
  for (const name of ['histogram', ...columns]) {
    const th = document.createElement('th');
    th.textContent = name;
    head.append(th);
  }
  table.tHead?.replaceChildren(head);
  table.tBodies[0].replaceChildren(
    ...Object.entries(histograms).map(([name, h]) => {
      const tr = document.createElement('tr');
      const first = document.createElement('td');
      first.textContent = name;
      tr.append(first);
      for (const column of columns) {
        const td = document.createElement('td');
        td.className = 'num';
        const value = /** @type {any} */ (h)?.[column];
        td.textContent = typeof value === 'number' ? (Number.isInteger(value) ? String(value) : value.toFixed(1)) : '–';
        tr.append(td);
      }
      return tr;
    }),
  );
}

async function poll() {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), FETCH_TIMEOUT_MS);
  try {
    const response = await fetch('/metrics.json', { cache: 'no-store', signal: controller.signal });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const metrics = await response.json();
    render(metrics);
    const relayCount = metrics.histograms?.relay_latency_us?.count ?? 0;
    setStatus(`Updated ${new Date().toLocaleTimeString()} · ${relayCount} relayed frames measured.`, 'ok');
    document.body.dataset.loaded = 'true';
  } catch (error) {
    setStatus(`Cannot load /metrics.json: ${error instanceof Error ? error.message : error}. Retrying…`, 'error');
  } finally {
    clearTimeout(timer);
    setTimeout(poll, POLL_MS);
  }
}

poll();
