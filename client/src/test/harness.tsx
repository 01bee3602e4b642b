import { vi } from 'vitest';
import type { ReactNode } from 'react';
import { QueryClient, QueryClientProvider } from '@tanstack/react-query';
import type { Api } from '../lib/api';
import type { AccountData, OrdersData, PositionsData, TradesData } from '../lib/schemas';
import { PortfolioStreamProvider, type UsePortfolioStreamOptions } from '../hooks/usePortfolioStream';
import { SocketFactory } from './fakeSocket';
import { account, EPOCH } from './fixtures';

export interface FakeApi extends Api {
  positions: ReturnType<typeof vi.fn<() => Promise<PositionsData>>>;
  orders: ReturnType<typeof vi.fn<() => Promise<OrdersData>>>;
  account: ReturnType<typeof vi.fn<() => Promise<AccountData>>>;
  trades: ReturnType<typeof vi.fn<() => Promise<TradesData>>>;
}

export function fakeApi(over: Partial<Api> = {}): FakeApi {
  const env = { userId: '1', seq: 0, epoch: EPOCH };
  return {
    me: vi.fn(async () => ({ userId: '1', username: 'alice', isAdmin: false })),
    login: vi.fn(async () => ({ userId: '1', username: 'alice', isAdmin: false })),
    logout: vi.fn(async () => undefined),
    health: vi.fn(async () => ({ status: 'ok', realtime: true })),
    positions: vi.fn(async () => ({ ...env, positions: [] })),
    orders: vi.fn(async () => ({ ...env, orders: [] })),
    account: vi.fn(async () => ({ ...env, account: account() })),
    trades: vi.fn(async () => ({ ...env, trades: [] })),
    accountHistory: vi.fn(async () => ({ userId: '1', period: '1D', points: [] })),
    ...over,
  } as FakeApi;
}

export function testQueryClient(): QueryClient {
  return new QueryClient({ defaultOptions: { queries: { retry: false, refetchOnWindowFocus: false } } });
}

export function streamWrapper(opts: {
  qc: QueryClient;
  api: Api;
  factory: SocketFactory;
  streamOptions?: UsePortfolioStreamOptions;
  onSessionRevoked?: () => void;
}) {
  return function Wrapper({ children }: { children: ReactNode }) {
    return (
      <QueryClientProvider client={opts.qc}>
        <PortfolioStreamProvider
          userId="1"
          api={opts.api}
          onSessionRevoked={opts.onSessionRevoked}
          streamOptions={{ url: 'ws://test/ws/portfolio', createSocket: opts.factory.create, random: () => 0.5, ...opts.streamOptions }}
        >
          {children}
        </PortfolioStreamProvider>
      </QueryClientProvider>
    );
  };
}
