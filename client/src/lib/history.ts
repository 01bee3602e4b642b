// Pure functions for the chart data kept in the query cache: the account's equity / day P&L line
// (back-filled from GET /api/account/history, extended by account_update events) and a short
// price line per symbol for the positions' sparklines (from position_update events).
import type { AccountHistory, AccountPoint, AccountUpdate, PositionUpdate } from './schemas';
import { compareTimestamps } from './time';

/** Points closer together than this replace the previous one instead of adding a new one. */
export const MIN_POINT_GAP_MS = 5_000;
/** The chart shows one day: older points are dropped. */
export const HISTORY_WINDOW_MS = 24 * 60 * 60 * 1000;
/** Per-symbol sparkline length. */
export const MAX_SPARK_POINTS = 120;

function ms(iso: string): number {
  return Date.parse(iso);
}

/**
 * Add one point to a time-ordered line. A point older than the last is ignored (out of order or
 * already included); one within `gapMs` of the last replaces it (the line's end stays current
 * without thousands of points); otherwise it is appended. Points older than `windowMs` before
 * the newest are dropped.
 */
export function addPoint<T extends { timestamp: string }>(
  points: readonly T[],
  point: T,
  { gapMs = MIN_POINT_GAP_MS, windowMs = HISTORY_WINDOW_MS, max = Infinity }: { gapMs?: number; windowMs?: number; max?: number } = {},
): T[] {
  const last = points[points.length - 1];
  if (last && compareTimestamps(point.timestamp, last.timestamp) < 0) return points as T[];
  const beforeLast = points.length > 1 ? points[points.length - 2] : undefined;
  let out: T[];
  if (last && (last.timestamp === point.timestamp || (beforeLast && ms(point.timestamp) - ms(beforeLast.timestamp) < gapMs))) {
    // the end point moves: points stay at least gapMs apart, except the newest
    out = [...points.slice(0, -1), point];
  } else {
    out = [...points, point];
  }
  const cutoff = ms(point.timestamp) - windowMs;
  let start = 0;
  while (start < out.length && ms(out[start]!.timestamp) < cutoff) start += 1;
  if (out.length - start > max) start = out.length - max;
  return start ? out.slice(start) : out;
}

/** The account chart's point for an account update. */
export function accountPoint(a: AccountUpdate): AccountPoint {
  return { timestamp: a.timestamp, equity: a.equity, dayPnl: a.dayPnl ?? null };
}

/** Extend the cached history with one account update (no-op before the first REST answer). */
export function applyAccountPoint(data: AccountHistory | undefined, a: AccountUpdate): AccountHistory | undefined {
  if (!data) return data;
  const points = addPoint(data.points, accountPoint(a));
  return points === data.points ? data : { ...data, points };
}

/**
 * A REST history answer merged with what the stream added meanwhile: the server's points up to
 * its last one, then the cached points that are newer.
 */
export function mergeHistory(fresh: AccountHistory, current: AccountHistory | undefined): AccountHistory {
  if (!current?.points.length) return fresh;
  const lastFresh = fresh.points[fresh.points.length - 1];
  const newer = lastFresh ? current.points.filter((p) => compareTimestamps(p.timestamp, lastFresh.timestamp) > 0) : current.points;
  let points = [...fresh.points];
  for (const p of newer) points = addPoint(points, p);
  return { ...fresh, points };
}

export interface PricePoint {
  timestamp: string;
  price: string;
}
export type PriceHistory = Record<string, PricePoint[]>;

/** Extend each updated symbol's price line; a closed position (quantity "0") keeps its line. */
export function applyPricePoints(data: PriceHistory | undefined, updates: readonly PositionUpdate[], now: string): PriceHistory {
  const out: PriceHistory = { ...(data ?? {}) };
  for (const u of updates) {
    const point = { timestamp: u.updatedAt ?? now, price: u.currentPrice };
    out[u.symbol] = addPoint(out[u.symbol] ?? [], point, { gapMs: 1_000, max: MAX_SPARK_POINTS });
  }
  return out;
}
