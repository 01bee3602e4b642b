// Derived figures of the positions table (exact decimal strings, no floats): cost basis,
// allocation and the totals row.
import { absDecimal, multiplyDecimals, percentOf, roundDecimal, sumDecimals } from './decimal';
import type { PositionUpdate } from './schemas';

export interface PositionRow extends PositionUpdate {
  /** entryPrice × quantity (USD, exact) */
  costBasis: string;
  /** |marketValue| / equity × 100, 2 dp; null when the equity is unknown or zero */
  allocationPercent: string | null;
}

/** Cost basis and allocation for each position. `equity` is the account's (null: unknown). */
export function positionRows(positions: readonly PositionUpdate[], equity: string | null | undefined): PositionRow[] {
  return positions.map((p) => {
    const mv = absDecimal(p.marketValue) ?? '0';
    return {
      ...p,
      costBasis: multiplyDecimals(p.entryPrice, p.quantity) ?? '0',
      allocationPercent: equity ? percentOf(mv, equity) : null,
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
