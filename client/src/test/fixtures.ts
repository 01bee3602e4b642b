import type { AccountUpdate, OrderUpdate, PositionUpdate, TradeExecuted } from '../lib/schemas';

export const EPOCH = 'ep-1';

export function position(symbol: string, over: Partial<PositionUpdate> = {}): PositionUpdate {
  return {
    symbol,
    quantity: '10',
    currentPrice: '187.32',
    entryPrice: '180.00',
    unrealizedPnl: '73.20',
    unrealizedPnlPercent: '4.07',
    marketValue: '1873.20',
    side: 'long',
    openedAt: '2026-11-25T19:00:00.000000Z',
    updatedAt: '2026-11-25T20:00:00.000000Z',
    ...over,
  };
}

export function order(orderId: string, over: Partial<OrderUpdate> = {}): OrderUpdate {
  return {
    orderId,
    brokerOrderId: `b-${orderId}`,
    symbol: 'AAPL',
    side: 'buy',
    type: 'market',
    status: 'new',
    qty: '5',
    filledQty: '0',
    submittedAt: '2026-11-25T20:00:00.000000Z',
    updatedAt: '2026-11-25T20:00:00.000000Z',
    ...over,
  };
}

export function account(over: Partial<AccountUpdate> = {}): AccountUpdate {
  return {
    equity: '100000.00',
    buyingPower: '200000.00',
    cash: '50000.00',
    portfolioValue: '100000.00',
    dayPnl: '125.50',
    dayPnlPercent: '0.13',
    timestamp: '2026-11-25T20:00:00.000000Z',
    ...over,
  };
}

export function trade(executionId: string, over: Partial<TradeExecuted> = {}): TradeExecuted {
  return {
    executionId,
    orderId: 'o1',
    brokerOrderId: 'b-o1',
    symbol: 'AAPL',
    side: 'buy',
    qty: '5',
    price: '187.32',
    positionQty: '15',
    partial: false,
    timestamp: '2026-11-25T20:00:01.000000Z',
    ...over,
  };
}

export function event(type: string, seq: number, data: unknown, epoch = EPOCH) {
  return { type, seq, epoch, userId: '1', timestamp: '2026-11-25T20:00:00.000000Z', data };
}
