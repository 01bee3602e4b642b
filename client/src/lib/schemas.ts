// zod schemas of the wire protocol (docs/protocol.md). Every WebSocket message and REST answer
// is parsed with these; anything that does not match is reported and dropped, never trusted.
import { z } from 'zod';
import { isDecimalString } from './decimal';

const decimal = z.string().refine(isDecimalString, { message: 'expected a decimal string' });
const timestamp = z.string().refine((s) => !Number.isNaN(Date.parse(s)), { message: 'expected an ISO 8601 timestamp' });

export const CHANNELS = ['positions', 'orders', 'account', 'trades'] as const;
export const channelSchema = z.enum(CHANNELS);
export type Channel = z.infer<typeof channelSchema>;

export const positionSchema = z.object({
  symbol: z.string().min(1),
  quantity: decimal,
  currentPrice: decimal,
  entryPrice: decimal,
  unrealizedPnl: decimal,
  unrealizedPnlPercent: decimal,
  marketValue: decimal,
  side: z.enum(['long', 'short']),
  openedAt: timestamp.nullish(),
  updatedAt: timestamp.nullish(),
  strategyId: z.string().nullish(),
  // Added by the accounting work (issue 8): optional, absent from older servers.
  /** realized P&L of the position since it was opened (USD, 2 dp) */
  realizedPnl: decimal.nullish(),
  /** realized P&L of the position today (USD, 2 dp) */
  realizedPnlToday: decimal.nullish(),
  // Added for issue 11's day change: optional, absent from older servers and hook events.
  /** the symbol's previous close, the broker's lastday_price (USD per share); null: unknown */
  lastdayPrice: decimal.nullish(),
  /** the symbol's P&L since the broker's last close (USD, 2 dp); null: unknown (docs/pnl.md) */
  dayPnl: decimal.nullish(),
});
export type PositionUpdate = z.infer<typeof positionSchema>;

export const orderSchema = z.object({
  orderId: z.string().min(1),
  brokerOrderId: z.string().nullish(),
  symbol: z.string().min(1),
  side: z.enum(['buy', 'sell']),
  type: z.string(),
  status: z.string(),
  qty: decimal.nullish(),
  filledQty: decimal.nullish(),
  filledAvgPrice: decimal.nullish(),
  submittedAt: timestamp.nullish(),
  filledAt: timestamp.nullish(),
  updatedAt: timestamp.nullish(),
});
export type OrderUpdate = z.infer<typeof orderSchema>;

export const accountSchema = z.object({
  equity: decimal,
  buyingPower: decimal,
  cash: decimal,
  portfolioValue: decimal,
  /** null when the broker's previous-day equity (last_equity) is unknown */
  dayPnl: decimal.nullable(),
  dayPnlPercent: decimal.nullable(),
  /** realized P&L today over every symbol (USD, 2 dp); optional (issue 8) */
  realizedPnlToday: decimal.nullish(),
  timestamp: timestamp,
});
export type AccountUpdate = z.infer<typeof accountSchema>;

export const tradeSchema = z.object({
  executionId: z.string().min(1),
  orderId: z.string(),
  brokerOrderId: z.string().nullish(),
  symbol: z.string().min(1),
  side: z.enum(['buy', 'sell']),
  qty: decimal,
  price: decimal,
  positionQty: decimal.nullish(),
  partial: z.boolean().optional().default(false),
  timestamp: timestamp,
});
export type TradeExecuted = z.infer<typeof tradeSchema>;

export const batchSchema = z.object({
  positions: z.array(positionSchema).optional().default([]),
  orders: z.array(orderSchema).optional().default([]),
  account: accountSchema.nullish(),
});
export type BatchUpdate = z.infer<typeof batchSchema>;

export const snapshotSchema = z.object({
  positions: z.array(positionSchema).optional(),
  orders: z.array(orderSchema).optional(),
  account: accountSchema.nullish(),
  trades: z.array(tradeSchema).optional(),
});
export type SnapshotData = z.infer<typeof snapshotSchema>;

export const statusSchema = z.object({
  code: z.string(),
  message: z.string().optional().default(''),
  stale: z.boolean().optional().default(false),
});
export type BrokerStatus = z.infer<typeof statusSchema>;

// `notice` (protocol.md, "Engine notices"): the server process lost / regained its message bus
// (Redis). Per connection and never numbered: its seq (0) and epoch ("") are not a stream position.
export const noticeSchema = z.object({
  code: z.string(),
  message: z.string().optional().default(''),
  degraded: z.boolean(),
});
export type Notice = z.infer<typeof noticeSchema>;

// Fields every server message carries. Stream events must have seq; per-connection messages
// (pong, error) are tolerated without it.
const envelope = {
  timestamp: timestamp.optional(),
  userId: z.union([z.string(), z.number()]).transform(String).optional(),
  epoch: z.string().nullish(),
};
const seqField = z.number().int().nonnegative();

export const serverMessageSchema = z.discriminatedUnion('type', [
  z.object({ ...envelope, seq: seqField, type: z.literal('position_update'), data: positionSchema }),
  z.object({ ...envelope, seq: seqField, type: z.literal('order_update'), data: orderSchema }),
  z.object({ ...envelope, seq: seqField, type: z.literal('account_update'), data: accountSchema }),
  z.object({ ...envelope, seq: seqField, type: z.literal('trade_executed'), data: tradeSchema }),
  z.object({ ...envelope, seq: seqField, type: z.literal('batch'), data: batchSchema }),
  z.object({ ...envelope, seq: seqField, type: z.literal('status'), data: statusSchema }),
  z.object({ ...envelope, seq: seqField, type: z.literal('snapshot'), data: snapshotSchema }),
  z.object({
    ...envelope,
    seq: seqField.optional(),
    type: z.literal('subscribed'),
    data: z.object({
      channels: z.array(z.string()),
      symbols: z.array(z.string()).nullish(),
      recovered: z.boolean().optional().default(false),
    }),
  }),
  z.object({ ...envelope, seq: seqField.optional(), type: z.literal('pong'), data: z.unknown().optional() }),
  z.object({ ...envelope, seq: seqField.optional(), type: z.literal('notice'), data: noticeSchema }),
  z.object({
    ...envelope,
    seq: seqField.optional(),
    type: z.literal('error'),
    data: z.object({ code: z.string(), message: z.string().optional().default('') }),
  }),
]);
export type ServerMessage = z.infer<typeof serverMessageSchema>;
export type StreamEventType = 'position_update' | 'order_update' | 'account_update' | 'trade_executed' | 'batch' | 'status';
export type StreamEvent = Extract<ServerMessage, { type: StreamEventType }>;
export const STREAM_EVENT_TYPES: ReadonlySet<string> = new Set<StreamEventType>([
  'position_update',
  'order_update',
  'account_update',
  'trade_executed',
  'batch',
  'status',
]);
export function isStreamEvent(msg: ServerMessage): msg is StreamEvent {
  return STREAM_EVENT_TYPES.has(msg.type);
}

// --- REST answers ---
const restEnvelope = {
  userId: z.union([z.string(), z.number()]).transform(String),
  seq: z.number().int().nonnegative().optional().default(0),
  epoch: z.string().nullish().transform((e) => e ?? null),
};
export const positionsResponseSchema = z.object({ ...restEnvelope, positions: z.array(positionSchema) });
export const ordersResponseSchema = z.object({ ...restEnvelope, orders: z.array(orderSchema) });
export const accountResponseSchema = z.object({ ...restEnvelope, account: accountSchema.nullable() });
export const tradesResponseSchema = z.object({ ...restEnvelope, trades: z.array(tradeSchema) });
/** One recorded account point (GET /api/account/history). */
export const accountPointSchema = z.object({
  timestamp: timestamp,
  equity: decimal,
  dayPnl: decimal.nullable(),
});
export type AccountPoint = z.infer<typeof accountPointSchema>;
export const accountHistorySchema = z.object({
  userId: z.union([z.string(), z.number()]).transform(String),
  period: z.string(),
  points: z.array(accountPointSchema),
});
export type AccountHistory = z.infer<typeof accountHistorySchema>;
export const meSchema = z.object({
  userId: z.union([z.string(), z.number()]).transform(String),
  username: z.string(),
  isAdmin: z.boolean().optional().default(false),
});
export const healthSchema = z.object({ status: z.string(), realtime: z.boolean().optional().default(true) });

export type PositionsData = z.infer<typeof positionsResponseSchema>;
export type OrdersData = z.infer<typeof ordersResponseSchema>;
export type AccountData = z.infer<typeof accountResponseSchema>;
export type TradesData = z.infer<typeof tradesResponseSchema>;
export type Me = z.infer<typeof meSchema>;
export type Health = z.infer<typeof healthSchema>;
