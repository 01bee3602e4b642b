// useRealtimePositions / Orders / Account / Trades: a TanStack query per data set, fed by REST
// (first load, fallback polling every 5 s, reconciliation every 60 s) and kept current by the
// stream with queryClient.setQueryData(['positions', userId], …) (REQ-11).
import { useEffect } from 'react';
import { useQuery, useQueryClient, type QueryClient } from '@tanstack/react-query';
import {
  applyAccountSnapshot,
  applyAccountUpdate,
  applyOrderUpdates,
  applyOrdersSnapshot,
  applyPositionUpdates,
  applyPositionsSnapshot,
  applyTrades,
  applyTradesSnapshot,
  reconcileAccount,
  reconcileOrders,
  reconcilePositions,
  reconcileTrades,
} from '../lib/cache';
import type { AccountData, OrdersData, PositionsData, ServerMessage, StreamEvent, TradesData } from '../lib/schemas';
import type { PortfolioStream } from '../stream/PortfolioStream';
import { POLL_INTERVAL_MS, RECONCILE_INTERVAL_MS, usePortfolioStreamContext } from './usePortfolioStream';

export const positionsKey = (userId: string) => ['positions', userId] as const;
export const ordersKey = (userId: string) => ['orders', userId] as const;
export const accountKey = (userId: string) => ['account', userId] as const;
export const tradesKey = (userId: string) => ['trades', userId] as const;

function refetchInterval(mode: 'realtime' | 'polling'): number {
  return mode === 'polling' ? POLL_INTERVAL_MS : RECONCILE_INTERVAL_MS;
}

/**
 * A REST answer as of `fresh.seq`, plus the stream events received after it. If the stream
 * already delivered a snapshot newer than the answer (the request raced the socket), the cache
 * — that snapshot and the events after it — is newer and complete: keep it.
 */
export function reconcile<T extends { seq: number; epoch: string | null }>(
  fresh: T,
  current: T | undefined,
  stream: PortfolioStream,
  merge: (fresh: T, later: StreamEvent[]) => T,
): T {
  if (current && current.epoch === fresh.epoch && stream.supersededBySnapshot(fresh.seq, fresh.epoch)) return current;
  return merge(fresh, stream.eventsAfter(fresh.seq, fresh.epoch));
}

// --- message handlers (exported for tests) ---

export function handlePositionsMessage(qc: QueryClient, userId: string, msg: ServerMessage): void {
  const key = positionsKey(userId);
  if (msg.type === 'position_update') {
    qc.setQueryData<PositionsData>(key, (old) => applyPositionUpdates(old, [msg.data], msg));
  } else if (msg.type === 'batch' && msg.data.positions.length) {
    qc.setQueryData<PositionsData>(key, (old) => applyPositionUpdates(old, msg.data.positions, msg));
  } else if (msg.type === 'snapshot' && msg.data.positions) {
    const positions = msg.data.positions;
    qc.setQueryData<PositionsData>(key, (old) => applyPositionsSnapshot(old, positions, { ...msg, userId }));
  }
}

export function handleOrdersMessage(qc: QueryClient, userId: string, msg: ServerMessage): void {
  const key = ordersKey(userId);
  if (msg.type === 'order_update') {
    qc.setQueryData<OrdersData>(key, (old) => applyOrderUpdates(old, [msg.data], msg));
  } else if (msg.type === 'batch' && msg.data.orders.length) {
    qc.setQueryData<OrdersData>(key, (old) => applyOrderUpdates(old, msg.data.orders, msg));
  } else if (msg.type === 'snapshot' && msg.data.orders) {
    const result = applyOrdersSnapshot(qc.getQueryData<OrdersData>(key), msg.data.orders, { ...msg, userId });
    qc.setQueryData<OrdersData>(key, result.data);
    // An order that was open is no longer: fetch its final status.
    if (result.stale) void qc.invalidateQueries({ queryKey: key });
  }
}

export function handleAccountMessage(qc: QueryClient, userId: string, msg: ServerMessage): void {
  const key = accountKey(userId);
  if (msg.type === 'account_update') {
    qc.setQueryData<AccountData>(key, (old) => applyAccountUpdate(old, msg.data, msg));
  } else if (msg.type === 'batch' && msg.data.account) {
    const account = msg.data.account;
    qc.setQueryData<AccountData>(key, (old) => applyAccountUpdate(old, account, msg));
  } else if (msg.type === 'snapshot' && msg.data.account !== undefined) {
    const account = msg.data.account ?? null;
    qc.setQueryData<AccountData>(key, (old) => applyAccountSnapshot(old, account, { ...msg, userId }));
  }
}

export function handleTradesMessage(qc: QueryClient, userId: string, msg: ServerMessage): void {
  const key = tradesKey(userId);
  if (msg.type === 'trade_executed') {
    qc.setQueryData<TradesData>(key, (old) => applyTrades(old, [msg.data], msg));
  } else if (msg.type === 'snapshot' && msg.data.trades) {
    const trades = msg.data.trades;
    qc.setQueryData<TradesData>(key, (old) => applyTradesSnapshot(old, trades, { ...msg, userId }));
  }
}

// --- hooks ---

export function useRealtimePositions() {
  const qc = useQueryClient();
  const { userId, api, stream, mode, subscribe } = usePortfolioStreamContext();
  useEffect(() => subscribe(['positions'], (msg) => handlePositionsMessage(qc, userId, msg)), [subscribe, qc, userId]);
  return useQuery({
    queryKey: positionsKey(userId),
    queryFn: async () => {
      const fresh = await api.positions(stream.symbols);
      return reconcile(fresh, qc.getQueryData(positionsKey(userId)), stream, reconcilePositions);
    },
    refetchInterval: refetchInterval(mode),
    refetchIntervalInBackground: true,
  });
}

export function useRealtimeOrders() {
  const qc = useQueryClient();
  const { userId, api, stream, mode, subscribe } = usePortfolioStreamContext();
  useEffect(() => subscribe(['orders'], (msg) => handleOrdersMessage(qc, userId, msg)), [subscribe, qc, userId]);
  return useQuery({
    queryKey: ordersKey(userId),
    queryFn: async () => {
      const fresh = await api.orders(stream.symbols);
      return reconcile(fresh, qc.getQueryData(ordersKey(userId)), stream, reconcileOrders);
    },
    refetchInterval: refetchInterval(mode),
    refetchIntervalInBackground: true,
  });
}

export function useRealtimeAccount() {
  const qc = useQueryClient();
  const { userId, api, stream, mode, subscribe } = usePortfolioStreamContext();
  useEffect(() => subscribe(['account'], (msg) => handleAccountMessage(qc, userId, msg)), [subscribe, qc, userId]);
  return useQuery({
    queryKey: accountKey(userId),
    queryFn: async () => {
      const fresh = await api.account();
      return reconcile(fresh, qc.getQueryData(accountKey(userId)), stream, reconcileAccount);
    },
    refetchInterval: refetchInterval(mode),
    refetchIntervalInBackground: true,
  });
}

export function useRealtimeTrades() {
  const qc = useQueryClient();
  const { userId, api, stream, mode, subscribe } = usePortfolioStreamContext();
  useEffect(() => subscribe(['trades'], (msg) => handleTradesMessage(qc, userId, msg)), [subscribe, qc, userId]);
  return useQuery({
    queryKey: tradesKey(userId),
    queryFn: async () => {
      const fresh = await api.trades(stream.symbols);
      return reconcile(fresh, qc.getQueryData(tradesKey(userId)), stream, reconcileTrades);
    },
    refetchInterval: refetchInterval(mode),
    refetchIntervalInBackground: true,
  });
}
