// Admin REST calls (docs/openapi.json, tag "admin"). Answers are validated loosely with zod:
// the admin page shows what it knows and tolerates fields added later.
import { z } from 'zod';
import { request } from '../lib/api';

const pct = z.number().nullable().optional().transform((v) => v ?? null);

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
        secondsSinceBrokerMessage: z.number(),
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
        leader: z.boolean(),
        ingestAccepted: z.number(),
        ingestRejected: z.number(),
      })
      .passthrough()
      .optional(),
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

const nullableNumber = z.number().nullable().optional().transform((v) => v ?? null);
export const clusterSchema = z.object({
  processes: z.array(
    z
      .object({
        id: z.string(),
        self: z.boolean().optional().default(false),
        partial: z.boolean().optional().default(false),
        connections: z.number(),
        users: z.number(),
        eventsDelivered: z.number(),
        latencyP95Ms: nullableNumber,
        loopLagP99Ms: nullableNumber,
        disconnectsLastMinute: z.number(),
        leader: z.boolean(),
        fanout: z.boolean().nullable().optional().transform((v) => v ?? null),
        brokerStale: z.boolean(),
        maxRssMb: nullableNumber,
        updatedAt: z.number(),
      })
      .passthrough(),
  ),
});
export type Cluster = z.infer<typeof clusterSchema>;

export const auditSchema = z.object({
  entries: z.array(z.object({ at: z.string(), actor: z.string(), action: z.string(), target: z.string(), detail: z.string() })),
});
export type Audit = z.infer<typeof auditSchema>;

export const adminApi = {
  stats: (): Promise<Stats> => request('/api/admin/websocket-stats', statsSchema),
  connections: (): Promise<ConnectedUsers> => request('/api/admin/connections', connectionsSchema),
  cluster: (): Promise<Cluster> => request('/api/admin/cluster', clusterSchema),
  audit: (): Promise<Audit> => request('/api/admin/audit', auditSchema),
  // JSON body + same-origin fetch: the server requires both (CSRF defence).
  disconnect: (userId: string): Promise<DisconnectResult> =>
    request(`/api/admin/users/${encodeURIComponent(userId)}/disconnect`, disconnectSchema, { method: 'POST', body: '{}' }),
};
export type AdminApi = typeof adminApi;
