import { describe, expect, it } from 'vitest';
import {
  applyAccountUpdate,
  applyOrderUpdates,
  applyOrdersSnapshot,
  applyPositionUpdates,
  applyTrades,
  reconcilePositions,
} from './cache';
import { account, EPOCH, event, order, position, trade } from '../test/fixtures';
import type { PositionsData, StreamEvent } from './schemas';

const base: PositionsData = { userId: '1', seq: 10, epoch: EPOCH, positions: [position('AAPL')] };

describe('cache merging', () => {
  it('ignores updates before the first REST answer (the answer will include them)', () => {
    expect(applyPositionUpdates(undefined, [position('AAPL')], { seq: 1, epoch: EPOCH })).toBeUndefined();
  });

  it('drops events the data already includes', () => {
    const r = applyPositionUpdates(base, [position('MSFT')], { seq: 10, epoch: EPOCH });
    expect(r).toBe(base);
  });

  it('applies in another epoch (server restarted) by timestamp', () => {
    const r = applyPositionUpdates(base, [position('MSFT')], { seq: 1, epoch: 'ep-2' })!;
    expect(r.positions.map((p) => p.symbol)).toEqual(['AAPL', 'MSFT']);
    expect(r.seq).toBe(1);
    expect(r.epoch).toBe('ep-2');
  });

  it('orders newest first and keeps the newer version of an order', () => {
    const data = { userId: '1', seq: 0, epoch: EPOCH, orders: [] };
    let r = applyOrderUpdates(data, [order('a', { submittedAt: '2026-11-25T20:00:00Z' })], { seq: 1, epoch: EPOCH })!;
    r = applyOrderUpdates(r, [order('b', { submittedAt: '2026-11-25T20:00:05Z' })], { seq: 2, epoch: EPOCH })!;
    expect(r.orders.map((o) => o.orderId)).toEqual(['b', 'a']);
    r = applyOrderUpdates(r, [order('a', { status: 'filled', updatedAt: '2026-11-25T20:00:07Z' })], { seq: 3, epoch: EPOCH })!;
    r = applyOrderUpdates(r, [order('a', { status: 'partially_filled', updatedAt: '2026-11-25T20:00:06Z' })], { seq: 4, epoch: EPOCH })!;
    expect(r.orders.find((o) => o.orderId === 'a')?.status).toBe('filled');
  });

  it('an orders snapshot keeps recent closed orders and flags vanished open ones', () => {
    const data = {
      userId: '1',
      seq: 3,
      epoch: EPOCH,
      orders: [order('done', { status: 'filled' }), order('was-open', { status: 'new' })],
    };
    const r = applyOrdersSnapshot(data, [order('still-open')], { seq: 5, epoch: EPOCH, userId: '1' });
    expect(r.data.orders.map((o) => o.orderId).sort()).toEqual(['done', 'still-open']);
    expect(r.stale).toBe(true);
  });

  it('account: newer timestamp wins', () => {
    const data = { userId: '1', seq: 1, epoch: EPOCH, account: account({ timestamp: '2026-11-25T20:00:05Z' }) };
    expect(applyAccountUpdate(data, account({ equity: '1', timestamp: '2026-11-25T20:00:04Z' }), { seq: 2, epoch: EPOCH })).toBe(data);
    expect(applyAccountUpdate(data, account({ equity: '2', timestamp: '2026-11-25T20:00:06Z' }), { seq: 2, epoch: EPOCH })?.account?.equity).toBe('2');
  });

  it('trades are de-duplicated and kept oldest first', () => {
    const data = { userId: '1', seq: 1, epoch: EPOCH, trades: [trade('x1')] };
    const r = applyTrades(data, [trade('x1'), trade('x0', { timestamp: '2026-11-25T19:00:00Z' })], { seq: 2, epoch: EPOCH })!;
    expect(r.trades.map((t) => t.executionId)).toEqual(['x0', 'x1']);
  });

  it('reconcile re-applies stream events newer than the REST answer', () => {
    const later = [
      event('position_update', 11, position('TSLA')),
      event('batch', 12, { positions: [position('AAPL', { quantity: '0', updatedAt: '2026-11-25T21:00:00Z' })], orders: [], account: null }),
    ] as unknown as StreamEvent[];
    const r = reconcilePositions(base, later);
    expect(r.positions.map((p) => p.symbol)).toEqual(['TSLA']);
    expect(r.seq).toBe(12);
  });
});
