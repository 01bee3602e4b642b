import { beforeEach, describe, expect, it, vi } from 'vitest';
import { act, renderHook, waitFor } from '@testing-library/react';
import type { QueryClient } from '@tanstack/react-query';
import { useRealtimeAccount, useRealtimeOrders, useRealtimePositions, useRealtimeTrades } from './useRealtime';
import { usePortfolioStreamContext } from './usePortfolioStream';
import { SocketFactory } from '../test/fakeSocket';
import { account, EPOCH, event, order, position, trade } from '../test/fixtures';
import { fakeApi, streamWrapper, testQueryClient, type FakeApi } from '../test/harness';
import type { AccountData, OrdersData, PositionsData, TradesData } from '../lib/schemas';

let factory: SocketFactory;
let qc: QueryClient;
let api: FakeApi;

function useAll() {
  return {
    positions: useRealtimePositions(),
    orders: useRealtimeOrders(),
    account: useRealtimeAccount(),
    trades: useRealtimeTrades(),
    stream: usePortfolioStreamContext(),
  };
}

async function mount() {
  const hook = renderHook(() => useAll(), { wrapper: streamWrapper({ qc, api, factory }) });
  await waitFor(() => expect(factory.sockets).toHaveLength(1));
  await waitFor(() => {
    expect(hook.result.current.positions.isSuccess).toBe(true);
    expect(hook.result.current.orders.isSuccess).toBe(true);
    expect(hook.result.current.account.isSuccess).toBe(true);
    expect(hook.result.current.trades.isSuccess).toBe(true);
  });
  act(() => factory.last.serverOpen());
  return hook;
}

const send = (msg: unknown) => act(() => factory.last.serverSend(msg));
const positionsData = () => qc.getQueryData<PositionsData>(['positions', '1']);
const ordersData = () => qc.getQueryData<OrdersData>(['orders', '1']);
const accountData = () => qc.getQueryData<AccountData>(['account', '1']);
const tradesData = () => qc.getQueryData<TradesData>(['trades', '1']);

beforeEach(() => {
  factory = new SocketFactory();
  qc = testQueryClient();
  api = fakeApi();
  vi.spyOn(console, 'warn').mockImplementation(() => undefined);
});

describe('useRealtime* hooks write stream events into the query cache', () => {
  it('calls setQueryData with [channel, userId] for every event type', async () => {
    const hook = await mount();
    const spy = vi.spyOn(qc, 'setQueryData');
    send(event('snapshot', 5, { positions: [position('AAPL')], orders: [order('o1')], account: account(), trades: [] }));
    expect(spy.mock.calls.map((c) => c[0])).toEqual(
      expect.arrayContaining([
        ['positions', '1'],
        ['orders', '1'],
        ['account', '1'],
        ['trades', '1'],
      ]),
    );
    expect(positionsData()?.positions.map((p) => p.symbol)).toEqual(['AAPL']);

    spy.mockClear();
    send(event('position_update', 6, position('MSFT', { unrealizedPnl: '-5.00' })));
    expect(spy).toHaveBeenCalledTimes(1);
    expect(spy.mock.calls[0]![0]).toEqual(['positions', '1']);
    expect(positionsData()?.positions.map((p) => p.symbol)).toEqual(['AAPL', 'MSFT']);
    expect(positionsData()?.seq).toBe(6);

    spy.mockClear();
    send(event('order_update', 7, order('o1', { status: 'filled', filledQty: '5', updatedAt: '2026-11-25T20:00:02.000000Z' })));
    expect(spy.mock.calls.map((c) => c[0])).toEqual([['orders', '1']]);
    expect(ordersData()?.orders[0]?.status).toBe('filled');

    spy.mockClear();
    send(event('account_update', 8, account({ equity: '100100.00', timestamp: '2026-11-25T20:00:03.000000Z' })));
    expect(spy.mock.calls.map((c) => c[0])).toEqual([['account', '1']]);
    expect(accountData()?.account?.equity).toBe('100100.00');

    spy.mockClear();
    send(event('trade_executed', 9, trade('x1')));
    expect(spy.mock.calls.map((c) => c[0])).toEqual([['trades', '1']]);
    expect(tradesData()?.trades.map((t) => t.executionId)).toEqual(['x1']);

    spy.mockClear();
    send(
      event('batch', 10, {
        positions: [position('AAPL', { currentPrice: '190.00', updatedAt: '2026-11-25T20:00:04.000000Z' })],
        account: account({ equity: '100200.00', timestamp: '2026-11-25T20:00:04.000000Z' }),
      }),
    );
    expect(spy.mock.calls.map((c) => c[0])).toEqual(expect.arrayContaining([['positions', '1'], ['account', '1']]));
    expect(positionsData()?.positions.find((p) => p.symbol === 'AAPL')?.currentPrice).toBe('190.00');
    expect(accountData()?.account?.equity).toBe('100200.00');

    // the components see it without a refetch
    expect(hook.result.current.account.data?.account?.equity).toBe('100200.00');
    expect(api.positions).toHaveBeenCalledTimes(1);
  });

  it('quantity "0" removes the position', async () => {
    await mount();
    send(event('snapshot', 5, { positions: [position('AAPL'), position('IBM')] }));
    send(event('position_update', 6, position('IBM', { quantity: '0', updatedAt: '2026-11-25T20:00:05.000000Z' })));
    expect(positionsData()?.positions.map((p) => p.symbol)).toEqual(['AAPL']);
  });

  it('an older update never overwrites a newer one', async () => {
    api.positions.mockResolvedValue({
      userId: '1',
      seq: 10,
      epoch: EPOCH,
      positions: [position('AAPL', { currentPrice: '200.00', updatedAt: '2026-11-25T20:00:10.000000Z' })],
    });
    await mount();
    expect(positionsData()?.seq).toBe(10);
    // seq already included in the REST answer: dropped
    send(event('position_update', 9, position('AAPL', { currentPrice: '150.00', updatedAt: '2026-11-25T20:00:09.000000Z' })));
    expect(positionsData()?.positions[0]?.currentPrice).toBe('200.00');
    // newer seq but an older timestamp for that symbol (reordered upstream): dropped too
    send(event('position_update', 11, position('AAPL', { currentPrice: '160.00', updatedAt: '2026-11-25T20:00:09.500000Z' })));
    expect(positionsData()?.positions[0]?.currentPrice).toBe('200.00');
    // newer: applied
    send(event('position_update', 12, position('AAPL', { currentPrice: '201.00', updatedAt: '2026-11-25T20:00:11.000000Z' })));
    expect(positionsData()?.positions[0]?.currentPrice).toBe('201.00');
    // same for orders and the account
    send(event('order_update', 13, order('o9', { status: 'filled', updatedAt: '2026-11-25T20:00:12.000000Z' })));
    send(event('order_update', 14, order('o9', { status: 'new', updatedAt: '2026-11-25T20:00:11.000000Z' })));
    expect(ordersData()?.orders.find((o) => o.orderId === 'o9')?.status).toBe('filled');
    send(event('account_update', 15, account({ equity: '1.00', timestamp: '2026-11-25T19:00:00.000000Z' })));
    expect(accountData()?.account?.equity).toBe('100000.00');
  });

  it('a gap in seq triggers an immediate REST refetch of everything', async () => {
    await mount();
    send(event('snapshot', 5, { positions: [] }));
    send(event('position_update', 6, position('AAPL')));
    expect(api.positions).toHaveBeenCalledTimes(1);
    send(event('position_update', 9, position('MSFT')));
    await waitFor(() => {
      expect(api.positions).toHaveBeenCalledTimes(2);
      expect(api.orders).toHaveBeenCalledTimes(2);
      expect(api.account).toHaveBeenCalledTimes(2);
      expect(api.trades).toHaveBeenCalledTimes(2);
    });
  });

  it('a REST answer is reconciled with events that arrived while it was in flight', async () => {
    await mount();
    send(event('snapshot', 5, { positions: [position('AAPL')] }));
    let resolve!: (v: PositionsData) => void;
    api.positions.mockImplementationOnce(() => new Promise((r) => (resolve = r)));
    await act(async () => {
      void qc.refetchQueries({ queryKey: ['positions', '1'] });
    });
    await waitFor(() => expect(api.positions).toHaveBeenCalledTimes(2));
    send(event('position_update', 6, position('TSLA', { updatedAt: '2026-11-25T20:00:06.000000Z' })));
    // the server answered as of seq 5: TSLA is not in it, but must not be lost
    await act(async () => resolve({ userId: '1', seq: 5, epoch: EPOCH, positions: [position('AAPL')] }));
    await waitFor(() => expect(positionsData()?.positions.map((p) => p.symbol)).toEqual(['AAPL', 'TSLA']));
    expect(positionsData()?.seq).toBe(6);
  });

  it('a REST answer older than a snapshot already applied does not roll the cache back', async () => {
    await mount();
    let resolve!: (v: PositionsData) => void;
    api.positions.mockImplementationOnce(() => new Promise((r) => (resolve = r)));
    await act(async () => {
      void qc.refetchQueries({ queryKey: ['positions', '1'] });
    });
    await waitFor(() => expect(api.positions).toHaveBeenCalledTimes(2));
    send(event('snapshot', 6, { positions: [position('AAPL'), position('NVDA')] }));
    await act(async () => resolve({ userId: '1', seq: 4, epoch: EPOCH, positions: [position('AAPL')] }));
    await waitFor(() => expect(qc.getQueryState(['positions', '1'])?.fetchStatus).toBe('idle'));
    expect(positionsData()?.positions.map((p) => p.symbol)).toEqual(['AAPL', 'NVDA']);
    expect(positionsData()?.seq).toBe(6);
  });

  it('reconciles over REST every 60 s while live, and polls every 5 s in fallback mode', async () => {
    await mount();
    const interval = (key: string) =>
      qc.getQueryCache().find({ queryKey: [key, '1'] })!.observers[0]!.options.refetchInterval;
    for (const key of ['positions', 'orders', 'account', 'trades']) expect(interval(key)).toBe(60_000);
    expect(api.health).toHaveBeenCalled();
  });

  it('/api/health realtime:false → polling every 5 s from the start, no socket', async () => {
    api = fakeApi({ health: vi.fn(async () => ({ status: 'ok', realtime: false })) });
    const hook = renderHook(() => useAll(), { wrapper: streamWrapper({ qc, api, factory }) });
    await waitFor(() => expect(hook.result.current.stream.mode).toBe('polling'));
    expect(factory.sockets).toHaveLength(0);
    const interval = (key: string) =>
      qc.getQueryCache().find({ queryKey: [key, '1'] })!.observers[0]!.options.refetchInterval;
    for (const key of ['positions', 'orders', 'account', 'trades']) expect(interval(key)).toBe(5_000);
    // and it really polls
    await waitFor(() => expect(api.positions.mock.calls.length).toBeGreaterThanOrEqual(2), { timeout: 7000 });
    expect(api.orders.mock.calls.length).toBeGreaterThanOrEqual(2);
    expect(api.account.mock.calls.length).toBeGreaterThanOrEqual(2);
  }, 10_000);

  it('exposes connectionStatus and lastEventAt', async () => {
    const hook = await mount();
    expect(hook.result.current.stream.connectionStatus).toBe('connected');
    expect(hook.result.current.stream.lastEventAt).toBeNull();
    send(event('snapshot', 5, { positions: [] }));
    expect(hook.result.current.stream.lastEventAt).not.toBeNull();
    act(() => factory.last.serverClose(1001));
    expect(hook.result.current.stream.connectionStatus).toBe('disconnected');
  });

  it('closes the socket on unmount', async () => {
    const hook = await mount();
    const ws = factory.last;
    hook.unmount();
    expect(ws.closedByClient?.code).toBe(1000);
  });

  it('a symbol filter narrows the socket and refetches positions, orders and trades with ?symbols', async () => {
    const hook = await mount();
    expect(api.positions).toHaveBeenLastCalledWith(null);
    act(() => hook.result.current.stream.setSymbols(['msft']));
    expect(factory.last.sent.at(-1)).toMatchObject({ type: 'subscribe', symbols: ['MSFT'] });
    await waitFor(() => {
      expect(api.positions).toHaveBeenLastCalledWith(['MSFT']);
      expect(api.orders).toHaveBeenLastCalledWith(['MSFT']);
      expect(api.trades).toHaveBeenLastCalledWith(['MSFT']);
    });
    expect(api.account).toHaveBeenCalledTimes(1); // the account is never filtered
    expect(hook.result.current.stream.symbols).toEqual(['MSFT']);
  });
});
