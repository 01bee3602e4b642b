// Admin REST calls (docs/openapi.json, tag "admin"). Answers are validated loosely with zod:
// the admin page shows what it knows and tolerates fields added later.
import { z } from 'zod';
import { request } from '../lib/api';

const pct = z.number().nullable().optional().transform((v) => v ?? null);

// `cluster` in the stats: every process sharing REDIS_URL (this one alone without Redis).
const processSchema = z
  .object({
    id: z.string(),
    alive: z.boolean().optional().default(true),
    ageS: z.number().optional(),
    self: z.boolean().optional().default(false),
    activeConnections: z.number(),
    activeUsers: z.number(),
    latencyMs: z.object({ p95: pct }).passthrough().optional(),
    loopLagMs: z.object({ p99: pct }).passthrough().optional(),
    outbox: z.object({ events: z.number(), engineDown: z.boolean() }).passthrough().optional(),
    role: z.string().optional().default('all'),
    accountsOwned: z.array(z.string()).optional().default([]),
    brokerStale: z.boolean().nullable().optional(),
    host: z.string().optional(),
    pid: z.number().optional(),
  })
  .passthrough();
export const clusterSchema = z
  .object({
    processes: z.array(processSchema),
    totals: z
      .object({
        processes: z.number(),
        gone: z.number(),
        activeConnections: z.number(),
        bridges: z.number(),
        accountsStreamed: z.number(),
      })
      .passthrough(),
  })
  .passthrough();
export type Cluster = z.infer<typeof clusterSchema>;

export const statsSchema = z
  .object({
    activeConnections: z.number(),
    activeUsers: z.number(),
    eventsDelivered: z.number(),
    disconnectsLastMinute: z.number(),
    disconnectsByCode: z.record(z.number()).optional().default({}),
    latencyMs: z.object({ p50: pct, p95: pct, p99: pct }).passthrough(),
    loopLagMs: z.object({ p50: pct, p95: pct, p99: pct, max: pct }).passthrough(),
    maxRssMb: z.number().optional(),
    broker: z
      .object({
        stale: z.boolean(),
        secondsSinceBrokerMessage: z.number().nullable(),
        rejectedUpdates: z.number().optional().default(0),
        symbolsWatched: z.array(z.string()).optional().default([]),
      })
      .passthrough(),
    bridge: z
      .object({
        tradingStreams: z.record(z.boolean()).optional().default({}),
        marketData: z.boolean().optional().default(false),
        syncs: z.number().optional().default(0),
        syncErrors: z.number().optional().default(0),
        demo: z.boolean().optional().default(false),
      })
      .passthrough()
      .optional(),
    redis: z
      .object({
        fanout: z.boolean().nullable(),
        role: z.string(),
        accountsOwned: z.number(),
        ingestAccepted: z.number(),
        ingestRejected: z.number(),
      })
      .passthrough()
      .optional(),
    cluster: clusterSchema.optional(),
    alerts: z.record(z.boolean()),
    alertThresholds: z
      .record(z.object({ field: z.string(), above: z.number(), unit: z.string() }).passthrough())
      .optional()
      .default({}),
  })
  .passthrough();
export type Stats = z.infer<typeof statsSchema>;

export const connectionsSchema = z.object({
  users: z.array(
    z.object({
      userId: z.union([z.string(), z.number()]).transform(String),
      username: z.string().nullable(),
      connections: z.number(),
      connectedSeconds: z.number(),
      lastSeenSeconds: z.number(),
    }),
  ),
});
export type ConnectedUsers = z.infer<typeof connectionsSchema>;

export const disconnectSchema = z.object({
  userId: z.union([z.string(), z.number()]).transform(String),
  sessionsRevoked: z.number(),
  socketsClosed: z.number(),
});
export type DisconnectResult = z.infer<typeof disconnectSchema>;


export const auditSchema = z.object({
  entries: z.array(z.object({ at: z.string(), actor: z.string(), action: z.string(), target: z.string(), detail: z.string() })),
});
export type Audit = z.infer<typeof auditSchema>;

export const adminApi = {
  stats: (): Promise<Stats> => request('/api/admin/websocket-stats', statsSchema),
  connections: (): Promise<ConnectedUsers> => request('/api/admin/connections', connectionsSchema),
  audit: (): Promise<Audit> => request('/api/admin/audit', auditSchema),
  // JSON body + same-origin fetch: the server requires both (CSRF defence).
  disconnect: (userId: string): Promise<DisconnectResult> =>
    request(`/api/admin/users/${encodeURIComponent(userId)}/disconnect`, disconnectSchema, { method: 'POST', body: '{}' }),
};
export type AdminApi = typeof adminApi;
