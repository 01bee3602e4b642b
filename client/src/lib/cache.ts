// Pure functions that merge stream events into the query cache's data. The cache holds the REST
// answers' shape ({userId, seq, epoch, positions|orders|account|trades}); `seq` there is the last
// event the data includes. Risk 4 (race conditions): an update never replaces newer data —
// an event whose seq the data already includes is dropped, and within one item the newer
// `updatedAt`/`timestamp` wins.
import { isZero } from './decimal';
import type {
  AccountData,
  AccountUpdate,
  OrderUpdate,
  OrdersData,
  PositionUpdate,
  PositionsData,
  StreamEvent,
  TradeExecuted,
  TradesData,
} from './schemas';
import { compareTimestamps, isOlder } from './time';

export interface EventMeta {
  seq: number;
  epoch?: string | null;
}

export const MAX_ORDERS = 100;
export const MAX_TRADES = 50;

export const OPEN_ORDER_STATUSES: ReadonlySet<string> = new Set([
  'new',
  'accepted',
  'pending_new',
  'accepted_for_bidding',
  'partially_filled',
  'pending_cancel',
  'pending_replace',
  'held',
  'calculated',
]);
export function isOpenOrder(o: OrderUpdate): boolean {
  return OPEN_ORDER_STATUSES.has(o.status);
}

interface Versioned {
  seq: number;
  epoch: string | null;
}

/** True when the cached data already includes the event (same epoch, seq not newer). */
export function alreadyIncluded(data: Versioned, meta: EventMeta): boolean {
  return !!meta.epoch && !!data.epoch && meta.epoch === data.epoch && meta.seq <= data.seq;
}

function bump<T extends Versioned>(data: T, meta: EventMeta): T {
  const sameEpoch = !meta.epoch || !data.epoch || meta.epoch === data.epoch;
  return { ...data, seq: sameEpoch ? Math.max(data.seq, meta.seq) : meta.seq, epoch: meta.epoch ?? data.epoch };
}

const bySymbol = (a: PositionUpdate, b: PositionUpdate) => (a.symbol < b.symbol ? -1 : a.symbol > b.symbol ? 1 : 0);

/** Apply complete position snapshots (never deltas); quantity "0" closes (removes) a position. */
export function applyPositionUpdates(
  data: PositionsData | undefined,
  updates: readonly PositionUpdate[],
  meta: EventMeta,
): PositionsData | undefined {
  if (!data || alreadyIncluded(data, meta)) return data;
  const map = new Map(data.positions.map((p) => [p.symbol, p]));
  for (const u of updates) {
    const current = map.get(u.symbol);
    if (current && isOlder(u.updatedAt, current.updatedAt)) continue;
    if (isZero(u.quantity)) map.delete(u.symbol);
    else map.set(u.symbol, u);
  }
  return bump({ ...data, positions: [...map.values()].sort(bySymbol) }, meta);
}

function orderTime(o: OrderUpdate): string | null | undefined {
  return o.updatedAt ?? o.filledAt ?? o.submittedAt;
}

const newestFirst = (a: OrderUpdate, b: OrderUpdate) => -compareTimestamps(a.submittedAt, b.submittedAt);

export function applyOrderUpdates(
  data: OrdersData | undefined,
  updates: readonly OrderUpdate[],
  meta: EventMeta,
): OrdersData | undefined {
  if (!data || alreadyIncluded(data, meta)) return data;
  const map = new Map(data.orders.map((o) => [o.orderId, o]));
  for (const u of updates) {
    const current = map.get(u.orderId);
    if (current && isOlder(orderTime(u), orderTime(current))) continue;
    map.set(u.orderId, u);
  }
  const orders = [...map.values()].sort(newestFirst);
  // Keep every open order, and the most recent closed ones.
  const trimmed = orders.filter((o, i) => isOpenOrder(o) || i < MAX_ORDERS);
  return bump({ ...data, orders: trimmed }, meta);
}

export function applyAccountUpdate(
  data: AccountData | undefined,
  update: AccountUpdate | null | undefined,
  meta: EventMeta,
): AccountData | undefined {
  if (!data || !update || alreadyIncluded(data, meta)) return data;
  if (data.account && isOlder(update.timestamp, data.account.timestamp)) return data;
  return bump({ ...data, account: update }, meta);
}

const oldestFirst = (a: TradeExecuted, b: TradeExecuted) => compareTimestamps(a.timestamp, b.timestamp);

export function applyTrades(
  data: TradesData | undefined,
  trades: readonly TradeExecuted[],
  meta: EventMeta,
): TradesData | undefined {
  if (!data || alreadyIncluded(data, meta)) return data;
  const seen = new Set(data.trades.map((t) => t.executionId));
  const added = trades.filter((t) => !seen.has(t.executionId));
  if (!added.length) return bump(data, meta);
  const all = [...data.trades, ...added].sort(oldestFirst);
  return bump({ ...data, trades: all.slice(-MAX_TRADES) }, meta);
}

// --- snapshots (state after `seq`: replaces what we had, unless we already have newer) ---

export function applyPositionsSnapshot(
  data: PositionsData | undefined,
  positions: readonly PositionUpdate[],
  meta: EventMeta & { userId: string },
): PositionsData {
  if (data && alreadyIncluded(data, meta) && data.seq > meta.seq) return data;
  return {
    userId: data?.userId ?? meta.userId,
    seq: meta.seq,
    epoch: meta.epoch ?? null,
    positions: positions.filter((p) => !isZero(p.quantity)).sort(bySymbol),
  };
}

/**
 * A snapshot lists only *open* orders. Keep the recent closed ones we have; an order we had as
 * open that the snapshot no longer lists was closed meanwhile — `stale` tells the caller to
 * refetch /api/orders for its final status.
 */
export function applyOrdersSnapshot(
  data: OrdersData | undefined,
  openOrders: readonly OrderUpdate[],
  meta: EventMeta & { userId: string },
): { data: OrdersData; stale: boolean } {
  if (data && alreadyIncluded(data, meta) && data.seq > meta.seq) return { data, stale: false };
  const open = new Set(openOrders.map((o) => o.orderId));
  const kept = (data?.orders ?? []).filter((o) => !open.has(o.orderId) && !isOpenOrder(o));
  const stale = (data?.orders ?? []).some((o) => isOpenOrder(o) && !open.has(o.orderId));
  return {
    data: {
      userId: data?.userId ?? meta.userId,
      seq: meta.seq,
      epoch: meta.epoch ?? null,
      orders: [...openOrders, ...kept].sort(newestFirst),
    },
    stale,
  };
}

export function applyAccountSnapshot(
  data: AccountData | undefined,
  account: AccountUpdate | null,
  meta: EventMeta & { userId: string },
): AccountData {
  if (data && alreadyIncluded(data, meta) && data.seq > meta.seq) return data;
  return { userId: data?.userId ?? meta.userId, seq: meta.seq, epoch: meta.epoch ?? null, account };
}

export function applyTradesSnapshot(
  data: TradesData | undefined,
  trades: readonly TradeExecuted[],
  meta: EventMeta & { userId: string },
): TradesData {
  if (data && alreadyIncluded(data, meta) && data.seq > meta.seq) return data;
  return {
    userId: data?.userId ?? meta.userId,
    seq: meta.seq,
    epoch: meta.epoch ?? null,
    trades: [...trades].sort(oldestFirst).slice(-MAX_TRADES),
  };
}

// --- reconciliation: a REST answer plus the stream events that arrived after it was taken ---

export function reconcilePositions(fresh: PositionsData, later: readonly StreamEvent[]): PositionsData {
  let data: PositionsData = fresh;
  for (const e of later) {
    const meta = { seq: e.seq, epoch: e.epoch };
    if (e.type === 'position_update') data = applyPositionUpdates(data, [e.data], meta)!;
    else if (e.type === 'batch' && e.data.positions.length) data = applyPositionUpdates(data, e.data.positions, meta)!;
  }
  return data;
}

export function reconcileOrders(fresh: OrdersData, later: readonly StreamEvent[]): OrdersData {
  let data: OrdersData = fresh;
  for (const e of later) {
    const meta = { seq: e.seq, epoch: e.epoch };
    if (e.type === 'order_update') data = applyOrderUpdates(data, [e.data], meta)!;
    else if (e.type === 'batch' && e.data.orders.length) data = applyOrderUpdates(data, e.data.orders, meta)!;
  }
  return data;
}

export function reconcileAccount(fresh: AccountData, later: readonly StreamEvent[]): AccountData {
  let data: AccountData = fresh;
  for (const e of later) {
    const meta = { seq: e.seq, epoch: e.epoch };
    if (e.type === 'account_update') data = applyAccountUpdate(data, e.data, meta)!;
    else if (e.type === 'batch' && e.data.account) data = applyAccountUpdate(data, e.data.account, meta)!;
  }
  return data;
}

export function reconcileTrades(fresh: TradesData, later: readonly StreamEvent[]): TradesData {
  let data: TradesData = fresh;
  for (const e of later) {
    if (e.type === 'trade_executed') data = applyTrades(data, [e.data], { seq: e.seq, epoch: e.epoch })!;
  }
  return data;
}
