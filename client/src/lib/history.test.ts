import { describe, expect, it } from 'vitest';
import { addPoint, applyAccountPoint, applyPricePoints, HISTORY_WINDOW_MS, mergeHistory, MAX_SPARK_POINTS } from './history';
import type { AccountHistory } from './schemas';
import { account, position } from '../test/fixtures';

const at = (s: number) => new Date(Date.UTC(2026, 11, 1, 10, 0, 0) + s * 1000).toISOString();
const pt = (s: number, equity = '1.00') => ({ timestamp: at(s), equity, dayPnl: '0.00' });

describe('addPoint', () => {
  it('appends points at least the gap apart and moves the end point inside the gap', () => {
    let line = addPoint([], pt(0, '1'));
    line = addPoint(line, pt(1, '2')); // second point: appended (nothing before the last)
    expect(line.map((p) => p.equity)).toEqual(['1', '2']);
    line = addPoint(line, pt(3, '3')); // 3 s after the point before the last: the end moves
    expect(line.map((p) => p.equity)).toEqual(['1', '3']);
    line = addPoint(line, pt(6, '4')); // 6 s after the first: a new point
    expect(line.map((p) => p.equity)).toEqual(['1', '3', '4']);
  });

  it('ignores an older point and replaces one with the same timestamp', () => {
    const line = [pt(0, '1'), pt(10, '2')];
    expect(addPoint(line, pt(5, '9'))).toBe(line);
    expect(addPoint(line, pt(10, '3')).map((p) => p.equity)).toEqual(['1', '3']);
  });

  it('drops points older than the window and keeps at most `max`', () => {
    const day = HISTORY_WINDOW_MS / 1000;
    const line = addPoint([pt(0), pt(10)], pt(day + 5));
    expect(line.map((p) => p.timestamp)).toEqual([at(10), at(day + 5)]);
    let capped: { timestamp: string }[] = [];
    for (let i = 0; i < 10; i++) capped = addPoint(capped, { timestamp: at(i * 10) }, { max: 3 });
    expect(capped.map((p) => p.timestamp)).toEqual([at(70), at(80), at(90)]);
  });
});

describe('account history in the cache', () => {
  const history = (points = [pt(0), pt(10)]): AccountHistory => ({ userId: '1', period: '1D', points });

  it('extends the history with account updates, not before the first answer', () => {
    expect(applyAccountPoint(undefined, account({ timestamp: at(20) }))).toBeUndefined();
    const next = applyAccountPoint(history(), account({ equity: '123.45', dayPnl: null, timestamp: at(20) }))!;
    expect(next.points[2]).toEqual({ timestamp: at(20), equity: '123.45', dayPnl: null });
  });

  it('merges a REST answer with the newer points the stream added', () => {
    const cached = history([pt(0, 'a'), pt(10, 'b'), pt(30, 'stream')]);
    const fresh = history([pt(0, 'a'), pt(10, 'b'), pt(20, 'server')]);
    expect(mergeHistory(fresh, cached).points.map((p) => p.equity)).toEqual(['a', 'b', 'server', 'stream']);
    expect(mergeHistory(fresh, undefined)).toBe(fresh);
  });

  it('keeps a price line per symbol for the sparklines', () => {
    let prices = applyPricePoints(undefined, [position('AAPL', { currentPrice: '1', updatedAt: at(0) })], at(0));
    prices = applyPricePoints(prices, [position('AAPL', { currentPrice: '2', updatedAt: at(2) }), position('MSFT', { updatedAt: at(2) })], at(2));
    expect(prices.AAPL!.map((p) => p.price)).toEqual(['1', '2']);
    expect(Object.keys(prices).sort()).toEqual(['AAPL', 'MSFT']);
    for (let i = 0; i < MAX_SPARK_POINTS + 10; i++) {
      prices = applyPricePoints(prices, [position('AAPL', { currentPrice: String(i), updatedAt: at(10 + i * 2) })], at(0));
    }
    expect(prices.AAPL).toHaveLength(MAX_SPARK_POINTS);
  });
});
