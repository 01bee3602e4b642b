import { describe, expect, it, vi } from 'vitest';
import { act, fireEvent, render, screen, waitFor } from '@testing-library/react';
import { QueryClientProvider } from '@tanstack/react-query';
import { testQueryClient } from '../test/harness';
import type { AdminApi, Stats } from './adminApi';
import { append, nextSample } from './history';

// uPlot needs a real canvas; jsdom has none. The chart is checked in Chromium (tests/e2e).
vi.mock('./Chart', () => ({
  Chart: ({ testId, data }: { testId: string; data: number[][] }) => <div data-testid={testId} data-points={data[0].length} />,
}));

const { default: AdminPage } = await import('./AdminPage');

function stats(over: Partial<Stats> = {}): Stats {
  return {
    activeConnections: 3,
    activeUsers: 2,
    eventsDelivered: 100,
    disconnectsLastMinute: 0,
    disconnectsByCode: { '4001': 2 },
    latencyMs: { p50: 1.5, p95: 12, p99: 30 },
    loopLagMs: { p50: 0.2, p95: 1, p99: 2, max: 3 },
    maxRssMb: 140,
    broker: { stale: false, secondsSinceBrokerMessage: 1, rejectedUpdates: 0, symbolsWatched: ['AAPL'] },
    bridge: { tradingStreams: { '1': true, '2': false }, marketData: true, syncs: 4, syncErrors: 0, demo: true },
    redis: { fanout: null, role: 'all', accountsOwned: 2, ingestAccepted: 0, ingestRejected: 0 },
    cluster: {
      processes: [
        { ...proc('host:1:a', 2), self: true, role: 'all', accountsOwned: ['1', '2'], host: 'web-1', pid: 11 },
        { ...proc('host:2:b', 5), self: false, role: 'web', alive: false, ageS: 42 },
      ],
      totals: { processes: 1, gone: 1, activeConnections: 2, eventsDelivered: 0, bridges: 1, accountsStreamed: 2 },
    },
    alerts: { disconnectRateHigh: false, latencyP95High: true },
    alertThresholds: { latencyP95High: { field: 'latencyMs.p95', above: 1000, unit: 'ms' } },
    ...over,
  } as Stats;
}

function proc(id: string, connections: number) {
  return {
    id,
    alive: true,
    ageS: 1,
    activeConnections: connections,
    activeUsers: 1,
    latencyMs: { p95: 4 },
    loopLagMs: { p99: 1 },
    outbox: { events: 0, engineDown: false },
  };
}

function fakeAdmin(): AdminApi & { disconnect: ReturnType<typeof vi.fn> } {
  let delivered = 100;
  return {
    stats: vi.fn(async () => stats({ eventsDelivered: (delivered += 20) })),
    connections: vi.fn(async () => ({
      users: [{ userId: '1', username: 'alice', connections: 2, connectedSeconds: 75, lastSeenSeconds: 3 }],
    })),
    disconnect: vi.fn(async (userId: string) => ({ userId, sessionsRevoked: 1, socketsClosed: 2 })),
    audit: vi.fn(async () => ({
      entries: [{ at: '2026-12-01T10:00:00Z', actor: 'cli:root', action: 'disable', target: 'carol', detail: '' }],
    })),
  };
}

describe('AdminPage', () => {
  it('shows live numbers, alerts with thresholds, streams per account, and grows its charts', async () => {
    const api = fakeAdmin();
    render(
      <QueryClientProvider client={testQueryClient()}>
        <AdminPage me={{ userId: '9', username: 'admin', isAdmin: true }} onLogout={() => undefined} adminApi={api} pollMs={50} />
      </QueryClientProvider>,
    );
    expect((await screen.findByTestId('stat-connections')).textContent).toBe('3');
    expect(screen.getByTestId('stat-latency-p95').textContent).toBe('12 ms');
    expect(screen.getByTestId('alert-latencyP95High').getAttribute('data-active')).toBe('true');
    expect(screen.getByTestId('alert-latencyP95High').textContent).toContain('latencyMs.p95 above 1000 ms');
    expect(screen.getByTestId('stream-2').textContent).toContain('down');
    expect(screen.getByTestId('disconnects-by-code').textContent).toContain('4001: 2');
    await waitFor(() => expect(Number(screen.getByTestId('chart-connections').getAttribute('data-points'))).toBeGreaterThan(2));
    await waitFor(() => expect(screen.getByTestId('stat-deliveries').textContent).not.toBe('–'));
    expect(window.location.pathname).toBe('/admin');
    expect(screen.getByTestId('process-host:1:a').textContent).toContain('web-1 (pid 11) (answering)');
    expect(screen.getByTestId('process-host:2:b').textContent).toContain('gone (42 s)');
    expect(screen.getByTestId('process-host:1:a').textContent).toContain('all · 2 accounts');
    expect(screen.getByTestId('process-totals').textContent).toContain('2');
    expect(screen.getByTestId('processes').textContent).toContain('1 live, 1 gone');
    expect(screen.queryByTestId('bridge-warning')).toBeNull();
    await waitFor(() => expect(screen.getByTestId('audit').textContent).toContain('cli:rootdisablecarol'));
  });

  it('disconnects a user and says what happened', async () => {
    const api = fakeAdmin();
    render(
      <QueryClientProvider client={testQueryClient()}>
        <AdminPage me={{ userId: '9', username: 'admin', isAdmin: true }} onLogout={() => undefined} adminApi={api} pollMs={10_000} />
      </QueryClientProvider>,
    );
    const button = await screen.findByRole('button', { name: "Disconnect alice's sessions" });
    await act(async () => fireEvent.click(button));
    expect(api.disconnect).toHaveBeenCalledWith('1');
    expect((await screen.findByTestId('admin-notice')).textContent).toBe('alice disconnected: 1 session(s) revoked, 2 socket(s) closed.');
  });
});

describe('history', () => {
  it('computes deliveries per second from the counter and keeps a bounded window', () => {
    const first = nextSample(null, stats({ eventsDelivered: 100 }), 10);
    expect(first.deliveriesPerS).toBeNull();
    const second = nextSample({ t: 10, delivered: 100 }, stats({ eventsDelivered: 140 }), 12);
    expect(second.deliveriesPerS).toBe(20);
    const restarted = nextSample({ t: 12, delivered: 140 }, stats({ eventsDelivered: 5 }), 14);
    expect(restarted.deliveriesPerS).toBeNull();
    let h = [first];
    for (let i = 0; i < 10; i++) h = append(h, second, 4);
    expect(h).toHaveLength(4);
  });
});
