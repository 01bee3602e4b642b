// Rolling history of admin stats samples for the charts: one point per poll, the last `limit`.
import type { Stats } from './adminApi';

export interface Sample {
  t: number; // unix seconds
  connections: number;
  users: number;
  deliveriesPerS: number | null;
  p50: number | null;
  p95: number | null;
  p99: number | null;
  loopLagP99: number | null;
}

export const HISTORY_LIMIT = 150; // 5 minutes at one poll every 2 s

// Deliveries per second come from the growth of the eventsDelivered counter between two polls;
// null for the first sample and after a restart of the process (counter went down).
export function nextSample(prev: { t: number; delivered: number } | null, stats: Stats, t: number): Sample {
  let rate: number | null = null;
  if (prev && t > prev.t && stats.eventsDelivered >= prev.delivered) {
    rate = (stats.eventsDelivered - prev.delivered) / (t - prev.t);
  }
  return {
    t,
    connections: stats.activeConnections,
    users: stats.activeUsers,
    deliveriesPerS: rate,
    p50: stats.latencyMs.p50,
    p95: stats.latencyMs.p95,
    p99: stats.latencyMs.p99,
    loopLagP99: stats.loopLagMs.p99,
  };
}

export function append(history: Sample[], sample: Sample, limit = HISTORY_LIMIT): Sample[] {
  const out = [...history, sample];
  return out.length > limit ? out.slice(out.length - limit) : out;
}
