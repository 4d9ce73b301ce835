// @ts-check
/**
 * The overview chart's arithmetic, free of the DOM (unit-tested in Node):
 * calendar-aligned time ticks, time buckets, and per-category aggregates.
 * Times are milliseconds since the epoch and are shown in UTC, like the
 * table.
 */

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

/**
 * @typedef {object} TimeStep
 * @property {'fixed'|'day'|'week'|'month'} kind
 * @property {number} n      units per step (ms for fixed, days, weeks, months)
 * @property {number} approx the step's length in ms (months: 30.4 days)
 * @property {string} label  for notes: "1 h", "1 day", "3 months"
 */

/** @type {TimeStep[]} */
export const TIME_STEPS = [
  ...[[1, '1 s'], [2, '2 s'], [5, '5 s'], [10, '10 s'], [15, '15 s'], [30, '30 s']].map(([n, label]) => ({ kind: /** @type {const} */ ('fixed'), n: Number(n) * SECOND, approx: Number(n) * SECOND, label: String(label) })),
  ...[[1, '1 min'], [2, '2 min'], [5, '5 min'], [10, '10 min'], [15, '15 min'], [30, '30 min']].map(([n, label]) => ({ kind: /** @type {const} */ ('fixed'), n: Number(n) * MINUTE, approx: Number(n) * MINUTE, label: String(label) })),
  ...[[1, '1 h'], [2, '2 h'], [3, '3 h'], [6, '6 h'], [12, '12 h']].map(([n, label]) => ({ kind: /** @type {const} */ ('fixed'), n: Number(n) * HOUR, approx: Number(n) * HOUR, label: String(label) })),
  { kind: 'day', n: 1, approx: DAY, label: '1 day' },
  { kind: 'day', n: 2, approx: 2 * DAY, label: '2 days' },
  { kind: 'week', n: 1, approx: 7 * DAY, label: '1 week' },
  { kind: 'month', n: 1, approx: 30.4 * DAY, label: '1 month' },
  { kind: 'month', n: 3, approx: 91.3 * DAY, label: '3 months' },
  { kind: 'month', n: 6, approx: 182.6 * DAY, label: '6 months' },
  { kind: 'month', n: 12, approx: 365.2 * DAY, label: '1 year' },
  { kind: 'month', n: 60, approx: 5 * 365.2 * DAY, label: '5 years' },
  { kind: 'month', n: 120, approx: 10 * 365.2 * DAY, label: '10 years' },
];

/** The smallest step that cuts `spanMs` into at most `count` steps. @param {number} spanMs @param {number} count */
export function pickStep(spanMs, count) {
  for (const step of TIME_STEPS) if (spanMs / step.approx <= count) return step;
  return TIME_STEPS[TIME_STEPS.length - 1];
}

/** The start of the step that holds `ms` (UTC; weeks start on Monday). @param {number} ms @param {TimeStep} step */
export function floorTime(ms, step) {
  if (step.kind === 'fixed') return Math.floor(ms / step.n) * step.n;
  if (step.kind === 'day') return Math.floor(ms / (step.n * DAY)) * step.n * DAY;
  if (step.kind === 'week') {
    // 1970-01-05 was a Monday.
    const monday = 4 * DAY;
    return Math.floor((ms - monday) / (7 * DAY)) * 7 * DAY + monday;
  }
  const d = new Date(ms);
  const months = d.getUTCFullYear() * 12 + d.getUTCMonth();
  const start = Math.floor(months / step.n) * step.n;
  return Date.UTC(Math.floor(start / 12), start % 12, 1);
}

/** `ms` plus one step. @param {number} ms @param {TimeStep} step */
export function addStep(ms, step) {
  if (step.kind === 'fixed') return ms + step.n;
  if (step.kind === 'day') return ms + step.n * DAY;
  if (step.kind === 'week') return ms + 7 * DAY;
  const d = new Date(ms);
  return Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + step.n, 1);
}

/**
 * Ticks at step boundaries from `min` to `max` (both included when they are
 * boundaries), at most about `count` of them.
 * @param {number} min @param {number} max @param {number} [count]
 * @returns {{ticks: number[], step: TimeStep}}
 */
export function timeTicks(min, max, count = 8) {
  const step = pickStep(Math.max(0, max - min), Math.max(1, count - 1));
  const ticks = [];
  let t = floorTime(min, step);
  if (t < min) t = addStep(t, step);
  for (; t <= max && ticks.length <= count * 2; t = addStep(t, step)) ticks.push(t);
  return { ticks, step };
}

/** A tick's label: as precise as its step needs. @param {number} ms @param {TimeStep} step */
export function formatTime(ms, step) {
  const iso = new Date(ms).toISOString();
  if (step.kind === 'month') return step.n % 12 === 0 ? iso.slice(0, 4) : iso.slice(0, 7);
  if (step.kind !== 'fixed') return iso.slice(0, 10);
  if (step.n >= HOUR) return `${iso.slice(5, 10)} ${iso.slice(11, 16)}`;
  if (step.n >= MINUTE) return iso.slice(11, 16);
  return iso.slice(11, 19);
}

/** @typedef {'mean'|'sum'|'min'|'max'|'count'} Aggregate */

/** Running aggregate of one group. */
class Acc {
  constructor() {
    this.count = 0;
    this.sum = 0;
    this.min = Infinity;
    this.max = -Infinity;
  }
  /** @param {number|null} y */
  add(y) {
    this.count += 1;
    if (y === null) return;
    this.sum += y;
    if (y < this.min) this.min = y;
    if (y > this.max) this.max = y;
  }
  /** @param {Aggregate} how */
  value(how) {
    if (how === 'count') return this.count;
    if (how === 'sum') return this.sum;
    if (how === 'min') return Number.isFinite(this.min) ? this.min : null;
    if (how === 'max') return Number.isFinite(this.max) ? this.max : null;
    return this.count ? this.sum / this.count : null;
  }
}

/**
 * Aggregate y per time bucket. Buckets are step-aligned (see
 * {@link floorTime}) and at most about `maxBuckets`; every row counts.
 * @param {ArrayLike<number|null>} xs  times, ms
 * @param {ArrayLike<number|null>|null} ys  values (null: count rows)
 * @param {Aggregate} how
 * @param {number} [maxBuckets]
 * @returns {{points: {x: number, y: number}[], step: TimeStep|null, min: number, max: number}}
 */
export function bucketByTime(xs, ys, how, maxBuckets = 200) {
  let min = Infinity;
  let max = -Infinity;
  for (let i = 0; i < xs.length; i += 1) {
    const x = xs[i];
    if (x === null || Number.isNaN(x)) continue;
    if (x < min) min = x;
    if (x > max) max = x;
  }
  if (!Number.isFinite(min)) return { points: [], step: null, min: 0, max: 0 };
  const step = pickStep(max - min, maxBuckets);
  /** @type {Map<number, Acc>} */
  const groups = new Map();
  for (let i = 0; i < xs.length; i += 1) {
    const x = xs[i];
    if (x === null || Number.isNaN(x)) continue;
    const key = floorTime(x, step);
    let acc = groups.get(key);
    if (!acc) groups.set(key, (acc = new Acc()));
    acc.add(ys ? ys[i] ?? null : 0);
  }
  const keys = [...groups.keys()].sort((a, b) => a - b);
  /** @type {{x: number, y: number}[]} */
  const points = [];
  for (const key of keys) {
    const y = /** @type {Acc} */ (groups.get(key)).value(ys ? how : 'count');
    if (y !== null) points.push({ x: key, y });
  }
  return { points, step, min: floorTime(min, step), max: floorTime(max, step) };
}

/**
 * Aggregate y per category (text, boolean), biggest first; categories past
 * `maxBars` are summed up as one "other" bar (for count and sum) or left out.
 * @param {ArrayLike<any>} cats
 * @param {ArrayLike<number|null>|null} ys  null: count rows
 * @param {Aggregate} how
 * @param {number} [maxBars]
 * @returns {{labels: string[], values: number[], hidden: number}}  hidden: categories not shown on their own
 */
export function aggregateByCategory(cats, ys, how, maxBars = 30) {
  /** @type {Map<string, Acc>} */
  const groups = new Map();
  for (let i = 0; i < cats.length; i += 1) {
    const c = cats[i];
    const key = c === null || c === undefined ? '∅ (null)' : String(c);
    let acc = groups.get(key);
    if (!acc) groups.set(key, (acc = new Acc()));
    acc.add(ys ? ys[i] ?? null : 0);
  }
  const effective = ys ? how : 'count';
  const rows = [...groups.entries()].map(([label, acc]) => ({ label, acc, value: acc.value(effective) ?? 0 }));
  rows.sort((a, b) => b.value - a.value || a.label.localeCompare(b.label));
  const shown = rows.slice(0, maxBars);
  const rest = rows.slice(maxBars);
  const labels = shown.map((r) => r.label);
  const values = shown.map((r) => r.value);
  if (rest.length && (effective === 'count' || effective === 'sum')) {
    labels.push(`other (${rest.length})`);
    values.push(rest.reduce((s, r) => s + r.value, 0));
  }
  return { labels, values, hidden: rest.length };
}

/**
 * Indexes of a uniform sample of `n` rows, at most `max` of them (every
 * k-th row, k the smallest integer that fits), and k.
 * @param {number} n @param {number} max
 */
export function sampleStride(n, max) {
  return n <= max ? 1 : Math.ceil(n / max);
}
