// The chart data in the query cache: ['accountHistory', userId] (back-filled from
// GET /api/account/history?period=1D, extended by account_update events) and
// ['priceHistory', userId] (per-symbol price lines from position_update events, this session).
import { useEffect } from 'react';
import { useQuery, useQueryClient, type QueryClient } from '@tanstack/react-query';
import { applyAccountPoint, applyPricePoints, mergeHistory, type PriceHistory } from '../lib/history';
import type { AccountHistory, ServerMessage } from '../lib/schemas';
import { utcNowIso } from '../lib/format';
import { usePortfolioStreamContext } from './usePortfolioStream';

export const accountHistoryKey = (userId: string) => ['accountHistory', userId] as const;
export const priceHistoryKey = (userId: string) => ['priceHistory', userId] as const;

/** Stream messages → chart points (exported for tests). */
export function handleHistoryMessage(qc: QueryClient, userId: string, msg: ServerMessage): void {
  const account =
    msg.type === 'account_update' ? msg.data : msg.type === 'batch' || msg.type === 'snapshot' ? msg.data.account : null;
  if (account) qc.setQueryData<AccountHistory>(accountHistoryKey(userId), (old) => applyAccountPoint(old, account));
  const positions =
    msg.type === 'position_update' ? [msg.data] : msg.type === 'batch' || msg.type === 'snapshot' ? (msg.data.positions ?? []) : [];
  if (positions.length) {
    qc.setQueryData<PriceHistory>(priceHistoryKey(userId), (old) => applyPricePoints(old, positions, utcNowIso()));
  }
}

/** Listens to the stream for chart points; mount once (the dashboard). */
export function useHistoryFeed(): void {
  const qc = useQueryClient();
  const { userId, subscribe } = usePortfolioStreamContext();
  useEffect(() => subscribe(['account', 'positions'], (msg) => handleHistoryMessage(qc, userId, msg)), [subscribe, qc, userId]);
}

/** The day's account line: the server's recorded points plus what the stream adds. */
export function useAccountHistory() {
  const qc = useQueryClient();
  const { userId, api, mode } = usePortfolioStreamContext();
  return useQuery({
    queryKey: accountHistoryKey(userId),
    queryFn: async () => mergeHistory(await api.accountHistory('1D'), qc.getQueryData(accountHistoryKey(userId))),
    // The stream extends it; while polling, the server's recording is the only source.
    refetchInterval: mode === 'polling' ? 30_000 : false,
    staleTime: Infinity,
  });
}

/** Per-symbol price lines for the sparklines (empty until prices move). */
export function usePriceHistory(): PriceHistory {
  const { userId } = usePortfolioStreamContext();
  const { data } = useQuery<PriceHistory>({
    queryKey: priceHistoryKey(userId),
    queryFn: () => ({}),
    staleTime: Infinity,
    gcTime: Infinity,
  });
  return data ?? {};
}
