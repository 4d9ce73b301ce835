// Unit tests of the overview chart's arithmetic (src/chart-model.js): time
// ticks on calendar boundaries, time buckets, category aggregates.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { aggregateByCategory, bucketByTime, formatTime, timeTicks, sampleStride } from '../src/chart-model.js';

const day = (d) => Date.UTC(2026, 0, d);

describe('time ticks', () => {
  it('a six-row daily series gets one tick per day, on the points, each labelled', () => {
    const xs = [1, 2, 3, 4, 5, 6].map(day);
    const { ticks, step } = timeTicks(xs[0], xs[5], 8);
    assert.deepEqual(ticks, xs, 'each day\'s point sits on its own tick');
    assert.deepEqual(ticks.map((t) => formatTime(t, step)), ['2026-01-01', '2026-01-02', '2026-01-03', '2026-01-04', '2026-01-05', '2026-01-06']);
  });

  it('half-hourly rows over 104 days get calendar-aligned weekly or monthly ticks', () => {
    const { ticks, step } = timeTicks(day(1), day(1) + 4999 * 1800_000, 8);
    assert.ok(ticks.length >= 3 && ticks.length <= 9, `${ticks.length} ticks`);
    for (const t of ticks) assert.equal(new Date(t).getUTCHours(), 0, 'at midnight');
    assert.match(formatTime(ticks[0], step), /^2026-01/);
  });

  it('seconds of a live stream get second-aligned ticks', () => {
    const start = Date.UTC(2026, 5, 1, 12, 0, 0, 400);
    const { ticks, step } = timeTicks(start, start + 30_000, 8);
    for (const t of ticks) assert.equal(t % 1000, 0);
    assert.match(formatTime(ticks[0], step), /^12:00:\d\d$/);
  });
});

describe('time buckets', () => {
  it('daily rows over six days stay one point per day, at the day\'s start', () => {
    const xs = [1, 2, 3, 4, 5, 6].map((d) => day(d) + 3_600_000 * 10);
    const { points } = bucketByTime(xs, [1, 2, 3, 4, 5, 6], 'sum', 6);
    assert.deepEqual(points, [1, 2, 3, 4, 5, 6].map((d) => ({ x: day(d), y: d })));
  });

  it('many rows are summed, averaged or counted per bucket, every row counting', () => {
    const xs = Array.from({ length: 48 }, (_, i) => day(1) + i * 1800_000); // two days, half-hourly
    const ys = xs.map(() => 2);
    const sum = bucketByTime(xs, ys, 'sum', 2);
    assert.deepEqual(sum.points.map((p) => p.y), [48, 48]);
    assert.deepEqual(bucketByTime(xs, ys, 'mean', 2).points.map((p) => p.y), [2, 2]);
    assert.deepEqual(bucketByTime(xs, null, 'mean', 2).points.map((p) => p.y), [24, 24]);
  });
});

describe('categories', () => {
  it('counts per category, biggest first, and folds the tail into "other"', () => {
    const cats = ['a', 'b', 'a', 'c', 'a', 'b', null, true];
    const { labels, values, hidden } = aggregateByCategory(cats, null, 'count', 2);
    assert.deepEqual(labels, ['a', 'b', 'other (3)']);
    assert.deepEqual(values, [3, 2, 3]);
    assert.equal(hidden, 3);
  });

  it('sums a numeric column per category', () => {
    const { labels, values } = aggregateByCategory(['x', 'y', 'x'], [1.5, 4, 2], 'sum');
    assert.deepEqual(labels, ['y', 'x']);
    assert.deepEqual(values, [4, 3.5]);
  });

  it('samples only above the limit', () => {
    assert.equal(sampleStride(4000, 4000), 1);
    assert.equal(sampleStride(4001, 4000), 2);
  });
});
