// Derived figures of the positions table (exact decimal strings, no floats): cost basis,
// allocation and the totals row.
import { absDecimal, multiplyDecimals, percentOf, roundDecimal, sumDecimals } from './decimal';
import type { PositionUpdate } from './schemas';

export interface PositionRow extends PositionUpdate {
  /** entryPrice × quantity (USD, exact) */
  costBasis: string;
  /** |marketValue| / equity × 100, 2 dp; null when the equity is unknown or zero */
  allocationPercent: string | null;
  /** P&L today (USD, 2 dp), null when unknown: see positionDayChange */
  dayChange: string | null;
}

/** Cost basis and allocation for each position. `equity` is the account's (null: unknown). */
export function positionRows(
  positions: readonly PositionUpdate[],
  equity: string | null | undefined,
  nowMs: number = Date.now(),
): PositionRow[] {
  return positions.map((p) => {
    const mv = absDecimal(p.marketValue) ?? '0';
    return {
      ...p,
      costBasis: multiplyDecimals(p.entryPrice, p.quantity) ?? '0',
      allocationPercent: equity ? percentOf(mv, equity) : null,
      dayChange: positionDayChange(p, nowMs),
    };
  });
}

export interface PositionTotals {
  marketValue: string;
  costBasis: string;
  unrealizedPnl: string;
  /** null when no position carries realizedPnl (older server) */
  realizedPnl: string | null;
  realizedPnlToday: string | null;
  /** null unless every row's day change is known */
  dayChange: string | null;
  allocationPercent: string | null;
}

function sum2(values: readonly string[]): string {
  return roundDecimal(sumDecimals(values) ?? '0', 2) ?? '0.00';
}

function sumOptional(values: readonly (string | null | undefined)[]): string | null {
  const known = values.filter((v): v is string => v != null);
  return known.length ? sum2(known) : null;
}

/** The totals row: exact sums, rounded to cents once at the end. */
export function positionTotals(rows: readonly PositionRow[], equity: string | null | undefined): PositionTotals {
  const marketValue = sum2(rows.map((r) => r.marketValue));
  const gross = sumDecimals(rows.map((r) => absDecimal(r.marketValue) ?? '0')) ?? '0';
  return {
    marketValue,
    costBasis: sum2(rows.map((r) => r.costBasis)),
    unrealizedPnl: sum2(rows.map((r) => r.unrealizedPnl)),
    realizedPnl: sumOptional(rows.map((r) => r.realizedPnl)),
    realizedPnlToday: sumOptional(rows.map((r) => r.realizedPnlToday)),
    dayChange: rows.length && rows.every((r) => r.dayChange !== null) ? sum2(rows.map((r) => r.dayChange!)) : null,
    allocationPercent: equity ? percentOf(gross, equity) : null,
  };
}

/** Parse a symbol filter typed by the trader: "aapl, msft tsla" → ["AAPL", "MSFT", "TSLA"]; "" → null. */
export function parseSymbolFilter(text: string): string[] | null {
  const symbols = text
    .split(/[\s,;]+/)
    .map((s) => s.trim().toUpperCase())
    .filter((s) => /^[A-Z0-9./-]{1,16}$/.test(s));
  return symbols.length ? [...new Set(symbols)].sort() : null;
}

/** Seconds after which a position's last update is shown ("Updated 42s ago"). */
export const SHOW_UPDATED_AFTER_S = 10;
/** The server's default STALE_AFTER_S: past it the age is highlighted. */
export const STALE_AFTER_S = 30;

/** "" while fresh (< 10 s), else the age; `stale` past STALE_AFTER_S. */
export function updatedLabel(ageMs: number | null): { text: string; stale: boolean } {
  if (ageMs === null) return { text: '', stale: false };
  const s = Math.floor(Math.max(0, ageMs) / 1000);
  if (s < SHOW_UPDATED_AFTER_S) return { text: '', stale: false };
  const text = s < 60 ? `${s}s ago` : s < 3600 ? `${Math.floor(s / 60)}m ago` : `${Math.floor(s / 3600)}h ago`;
  return { text: `Updated ${text}`, stale: s >= STALE_AFTER_S };
}

// --- day change per position ---

function easternParts(ms: number): { y: number; m: number; d: number; h: number } {
  const parts = new Intl.DateTimeFormat('en-US', {
    timeZone: 'America/New_York',
    year: 'numeric',
    month: 'numeric',
    day: 'numeric',
    hour: 'numeric',
    hourCycle: 'h23',
  }).formatToParts(new Date(ms));
  const get = (t: string) => Number(parts.find((p) => p.type === t)?.value);
  return { y: get('year'), m: get('month'), d: get('day'), h: get('hour') };
}

/**
 * The last 16:00 America/New_York at or before `nowMs` (weekends and holidays not skipped: a
 * position opened before it is simply "not opened since the last close"). Alpaca's last_equity,
 * the base of the account's day P&L, is the equity at that close.
 */
export function lastCloseBefore(nowMs: number): number {
  const et = easternParts(nowMs);
  let day = Date.UTC(et.y, et.m - 1, et.d);
  if (et.h < 16) day -= 24 * 3600 * 1000;
  // 16:00 EST is 21:00 UTC; in daylight time (EDT) it is 20:00 UTC.
  let close = day + 21 * 3600 * 1000;
  if (easternParts(close).h === 17) close -= 3600 * 1000;
  return close;
}

/**
 * A position's P&L today. The server's `dayPnl` when the event carries the field (computed exactly
 * from the broker's previous close, docs/pnl.md; null there means unknown and stays unknown).
 * Without it (an older server, a hook event) only what can be known without the previous close:
 * for a position opened since the last close, all its unrealized P&L is today's, plus what it
 * realized today (`realizedPnlToday`, else `realizedPnl`). Null for an older position or when the
 * server sends no realized figure (it could hide a partial close).
 */
export function positionDayChange(p: PositionUpdate, nowMs: number): string | null {
  if (p.dayPnl !== undefined) return p.dayPnl === null ? null : roundDecimal(p.dayPnl, 2);
  const opened = p.openedAt ? Date.parse(p.openedAt) : NaN;
  if (Number.isNaN(opened) || opened < lastCloseBefore(nowMs)) return null;
  const realized = p.realizedPnlToday ?? p.realizedPnl;
  if (realized == null) return null;
  return roundDecimal(sumDecimals([p.unrealizedPnl, realized]) ?? '0', 2);
}
