import { describe, expect, it } from 'vitest';
import { lastCloseBefore, parseSymbolFilter, positionDayChange, positionRows, positionTotals, updatedLabel } from './positions';
import { multiplyDecimals, percentOf, subtractDecimals, sumDecimals } from './decimal';
import { position } from '../test/fixtures';

describe('exact decimal arithmetic', () => {
  it('sums, subtracts, multiplies and takes percentages without floats', () => {
    expect(sumDecimals(['0.1', '0.2'])).toBe('0.3');
    expect(sumDecimals(['-1.005', '1', '0.005'])).toBe('0');
    expect(sumDecimals([])).toBe('0');
    expect(sumDecimals(['1', 'x'])).toBeNull();
    expect(subtractDecimals('397.27', '125.46')).toBe('271.81');
    expect(subtractDecimals('-1', '-1.5')).toBe('0.5');
    expect(multiplyDecimals('187.32', '10')).toBe('1873.2');
    expect(multiplyDecimals('-0.1', '0.3')).toBe('-0.03');
    expect(percentOf('1873.20', '100000')).toBe('1.87');
    expect(percentOf('1', '3')).toBe('33.33');
    expect(percentOf('2', '3')).toBe('66.67');
    expect(percentOf('1', '0')).toBeNull();
  });
});

describe('positions table figures', () => {
  const rows = positionRows(
    [
      position('AAPL', { quantity: '10', entryPrice: '180.00', marketValue: '1873.20', unrealizedPnl: '73.20', realizedPnl: '10.005' }),
      position('TSLA', { side: 'short', quantity: '3', entryPrice: '250.10', marketValue: '-741.00', unrealizedPnl: '9.30', realizedPnl: null }),
    ],
    '100000.00',
  );

  it('adds cost basis and allocation (|market value| / equity)', () => {
    expect(rows.map((r) => [r.costBasis, r.allocationPercent])).toEqual([
      ['1800', '1.87'],
      ['750.3', '0.74'],
    ]);
    expect(positionRows([position('X')], null)[0]!.allocationPercent).toBeNull();
  });

  it('totals are exact sums rounded once; realized only from the positions that carry it', () => {
    const t = positionTotals(rows, '100000.00');
    expect(t).toEqual({
      marketValue: '1132.20',
      costBasis: '2550.30',
      unrealizedPnl: '82.50',
      realizedPnl: '10.01',
      realizedPnlToday: null,
      dayChange: null,
      allocationPercent: '2.61',
    });
    expect(positionTotals([], null).realizedPnl).toBeNull();
  });

  it('parses a typed symbol filter', () => {
    expect(parseSymbolFilter(' aapl, msft  tsla;aapl ')).toEqual(['AAPL', 'MSFT', 'TSLA']);
    expect(parseSymbolFilter('   ')).toBeNull();
    expect(parseSymbolFilter('BRK.B, $$$')).toEqual(['BRK.B']);
  });

  it('shows the age only once it says something, highlighted past STALE_AFTER_S', () => {
    expect(updatedLabel(null)).toEqual({ text: '', stale: false });
    expect(updatedLabel(9_999)).toEqual({ text: '', stale: false });
    expect(updatedLabel(12_000)).toEqual({ text: 'Updated 12s ago', stale: false });
    expect(updatedLabel(31_000)).toEqual({ text: 'Updated 31s ago', stale: true });
    expect(updatedLabel(125_000)).toEqual({ text: 'Updated 2m ago', stale: true });
  });
});

describe('day change per position', () => {
  const utc = (...a: [number, number, number, number, number?]) => Date.UTC(...a);

  it('finds the last 16:00 New York close, in winter and summer time', () => {
    expect(lastCloseBefore(utc(2026, 11, 1, 15, 0))).toBe(utc(2026, 10, 30, 21, 0)); // 10:00 EST
    expect(lastCloseBefore(utc(2026, 11, 1, 22, 0))).toBe(utc(2026, 11, 1, 21, 0)); // 17:00 EST
    expect(lastCloseBefore(utc(2026, 6, 1, 21, 0))).toBe(utc(2026, 6, 1, 20, 0)); // 17:00 EDT
    expect(lastCloseBefore(utc(2026, 6, 1, 19, 59))).toBe(utc(2026, 5, 30, 20, 0)); // 15:59 EDT
  });

  it('is unrealized + realized today for a position opened since the close, else unknown', () => {
    const now = utc(2026, 11, 1, 18, 0);
    const today = '2026-12-01T15:00:00.000000Z';
    expect(positionDayChange(position('A', { openedAt: today, unrealizedPnl: '73.20', realizedPnlToday: '10.005' }), now)).toBe('83.21');
    expect(positionDayChange(position('A', { openedAt: today, unrealizedPnl: '-5.00', realizedPnl: '1.00' }), now)).toBe('-4.00');
    // no realized figure: a partial close could be hidden
    expect(positionDayChange(position('A', { openedAt: today }), now)).toBeNull();
    // held since before the last close: the previous close price would be needed
    expect(positionDayChange(position('A', { openedAt: '2026-11-30T15:00:00Z', realizedPnlToday: '0' }), now)).toBeNull();
    const rows = positionRows(
      [position('A', { openedAt: today, unrealizedPnl: '1.00', realizedPnlToday: '0' }), position('B', { openedAt: today, unrealizedPnl: '2.50', realizedPnlToday: '0.25' })],
      '1000',
      now,
    );
    expect(positionTotals(rows, '1000').dayChange).toBe('3.75');
  });

  it("uses the server's dayPnl when the event carries it, for a position held overnight too", () => {
    const now = utc(2026, 11, 1, 18, 0);
    const overnight = '2026-11-30T15:00:00Z';
    // held since before the last close: the client alone cannot know it, the server can
    expect(positionDayChange(position('A', { openedAt: overnight, lastdayPrice: '185.125', dayPnl: '48.75' }), now)).toBe('48.75');
    expect(positionDayChange(position('A', { openedAt: overnight, dayPnl: '-12.5' }), now)).toBe('-12.50');
    // the server's figure wins over the client's own for a position opened today
    const today = '2026-12-01T15:00:00.000000Z';
    expect(positionDayChange(position('A', { openedAt: today, unrealizedPnl: '73.20', realizedPnlToday: '0', dayPnl: '70.00' }), now)).toBe('70.00');
    // null from the server is "unknown" (previous close not known yet): no guess from the client
    expect(positionDayChange(position('A', { openedAt: today, unrealizedPnl: '73.20', realizedPnlToday: '0', dayPnl: null }), now)).toBeNull();
    const rows = positionRows(
      [position('A', { openedAt: overnight, dayPnl: '48.75' }), position('B', { openedAt: today, unrealizedPnl: '2.50', realizedPnlToday: '0.25' })],
      '1000',
      now,
    );
    expect(rows.map((r) => r.dayChange)).toEqual(['48.75', '2.75']);
    expect(positionTotals(rows, '1000').dayChange).toBe('51.50');
  });
});
