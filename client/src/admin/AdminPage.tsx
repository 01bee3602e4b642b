// The operator's page at /admin (admin role; a lazily loaded chunk of the same SPA build).
// It polls GET /api/admin/websocket-stats and /api/admin/connections every 2 s and shows the
// process that answered: connections, deliveries/s, latency and loop lag over time (uPlot),
// disconnects by close code, broker feed per account, Redis/role/ingest, alerts with their
// thresholds, and the connected users with a "disconnect this user's sessions" action.
import { useEffect, useMemo, useRef, useState } from 'react';
import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import type { Me } from '../lib/schemas';
import { adminApi as defaultAdminApi, type AdminApi, type Audit, type Cluster, type DisconnectResult, type Stats } from './adminApi';
import { Chart } from './Chart';
import { append, nextSample, type Sample } from './history';

export const POLL_MS = 2_000;

function ms(v: number | null | undefined): string {
  return v === null || v === undefined ? '–' : `${v.toFixed(v < 10 ? 1 : 0)} ms`;
}

function accountsText(owned: string[] | undefined): string {
  const n = owned?.length ?? 0;
  return n ? ` · ${n} account${n === 1 ? '' : 's'}` : '';
}

function ago(seconds: number | null): string {
  if (seconds === null) return '–';
  if (seconds < 60) return `${Math.round(seconds)} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
  return `${Math.floor(seconds / 3600)} h ${Math.floor((seconds % 3600) / 60)} min`;
}

function Tile({ label, value, testId, alert }: { label: string; value: string; testId: string; alert?: boolean }) {
  return (
    <div className={`tile${alert ? ' tile--alert' : ''}`}>
      <div className="tile-label">{label}</div>
      <div className="tile-value" data-testid={testId}>
        {value}
      </div>
    </div>
  );
}

function AlertsPanel({ stats }: { stats: Stats }) {
  const names = Object.keys(stats.alerts);
  return (
    <section className="card" aria-labelledby="alerts-title" data-testid="alerts">
      <h2 id="alerts-title">Alerts</h2>
      <ul className="plain">
        {names.map((name) => {
          const t = stats.alertThresholds[name];
          const on = stats.alerts[name];
          return (
            <li key={name} data-testid={`alert-${name}`} data-active={on ? 'true' : 'false'}>
              <span className={`status-dot status-dot--${on ? 'red' : 'green'}`} aria-hidden="true" /> {name}
              {t && (
                <span className="muted">
                  {' '}
                  — {t.unit === 'true/false' ? `when ${t.field} is true` : `${t.field} above ${t.above} ${t.unit}`}
                </span>
              )}
              <span className="sr-only">{on ? ' firing' : ' ok'}</span>
            </li>
          );
        })}
      </ul>
    </section>
  );
}

function BrokerPanel({ stats }: { stats: Stats }) {
  const streams = Object.entries(stats.bridge?.tradingStreams ?? {});
  return (
    <section className="card" aria-labelledby="broker-title" data-testid="broker-panel">
      <h2 id="broker-title">Broker feed</h2>
      <p>
        {stats.broker.stale ? 'Stale' : 'Live'} · last message {ago(stats.broker.secondsSinceBrokerMessage)} ago · market data{' '}
        {stats.bridge?.marketData ? 'running' : 'idle'} ({stats.broker.symbolsWatched.length} symbols) · syncs {stats.bridge?.syncs ?? 0}, errors{' '}
        {stats.bridge?.syncErrors ?? 0} · rejected updates {stats.broker.rejectedUpdates}
        {stats.bridge?.demo ? ' · demo simulator' : ''}
      </p>
      <table className="admin-table">
        <thead>
          <tr>
            <th scope="col">Account (userId)</th>
            <th scope="col">Trading stream</th>
          </tr>
        </thead>
        <tbody>
          {streams.map(([user, alive]) => (
            <tr key={user} data-testid={`stream-${user}`}>
              <td>{user}</td>
              <td>{alive ? 'running' : 'down'}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}

function ClusterPanel({ stats }: { stats: Stats }) {
  const r = stats.redis;
  const codes = Object.entries(stats.disconnectsByCode).sort(([a], [b]) => a.localeCompare(b));
  return (
    <section className="card" aria-labelledby="cluster-title" data-testid="cluster-panel">
      <h2 id="cluster-title">Redis, role, ingest</h2>
      {r && r.fanout !== null ? (
        <p>
          Fan-out {r.fanout ? 'up' : 'down'} · this process: {r.role}, streams {r.accountsOwned} broker account
          {r.accountsOwned === 1 ? '' : 's'} · ingest accepted {r.ingestAccepted}, rejected {r.ingestRejected}
        </p>
      ) : (
        <p>Single process (no REDIS_URL): this process streams every broker account.</p>
      )}
      <h3>Disconnects by close code (since start)</h3>
      {codes.length === 0 ? (
        <p className="muted">None yet.</p>
      ) : (
        <ul className="plain inline" data-testid="disconnects-by-code">
          {codes.map(([code, n]) => (
            <li key={code}>
              <strong>{code}</strong>: {n}
            </li>
          ))}
        </ul>
      )}
    </section>
  );
}

function ProcessesPanel({ cluster }: { cluster: Cluster | undefined }) {
  if (!cluster) return null;
  const rows = cluster.processes;
  const { totals } = cluster;
  return (
    <section className="card admin-processes" aria-labelledby="processes-title" data-testid="processes">
      <h2 id="processes-title">
        Processes ({totals.processes} live{totals.gone ? `, ${totals.gone} gone` : ''})
      </h2>
      {totals.bridges === 0 && (
        <p className="error" role="alert" data-testid="bridge-warning">
          No bridge process is running: no broker account is streamed.
        </p>
      )}
      <table className="admin-table">
        <thead>
          <tr>
            <th scope="col">Process</th>
            <th scope="col">Connections</th>
            <th scope="col">Users</th>
            <th scope="col">Latency p95</th>
            <th scope="col">Loop lag p99</th>
            <th scope="col">Outbox</th>
            <th scope="col">Role</th>
            <th scope="col">Last report</th>
          </tr>
        </thead>
        <tbody>
          {rows.map((p) => (
            <tr key={p.id} data-testid={`process-${p.id}`} className={p.alive ? undefined : 'muted'}>
              <td>
                {p.host && p.pid ? `${p.host} (pid ${p.pid})` : p.id}
                {p.self && <span className="muted"> (answering)</span>}
              </td>
              <td>{p.activeConnections}</td>
              <td>{p.activeUsers}</td>
              <td>{ms(p.latencyMs?.p95)}</td>
              <td>{ms(p.loopLagMs?.p99)}</td>
              <td>{p.outbox ? `${p.outbox.events}${p.outbox.engineDown ? ', Redis down' : ''}` : '–'}</td>
              <td>
                {p.role}
                {accountsText(p.accountsOwned)}
                {p.brokerStale && ' · feed stale'}
              </td>
              <td>{p.alive ? (p.ageS === undefined ? 'now' : `${Math.round(p.ageS)} s ago`) : `gone (${Math.round(p.ageS ?? 0)} s)`}</td>
            </tr>
          ))}
        </tbody>
        {rows.length > 1 && (
          <tfoot>
            <tr data-testid="process-totals">
              <th scope="row">Cluster (live)</th>
              <td>{totals.activeConnections}</td>
              <td colSpan={6} />
            </tr>
          </tfoot>
        )}
      </table>
    </section>
  );
}

function AuditPanel({ audit }: { audit: Audit | undefined }) {
  return (
    <section className="card admin-audit" aria-labelledby="audit-title" data-testid="audit">
      <h2 id="audit-title">Recent operator actions</h2>
      {!audit || audit.entries.length === 0 ? (
        <p className="muted">None yet.</p>
      ) : (
        <table className="admin-table">
          <thead>
            <tr>
              <th scope="col">When</th>
              <th scope="col">Who</th>
              <th scope="col">Action</th>
              <th scope="col">User</th>
              <th scope="col">Detail</th>
            </tr>
          </thead>
          <tbody>
            {audit.entries.slice(0, 10).map((e, i) => (
              <tr key={`${e.at}-${i}`}>
                <td>{new Date(e.at).toLocaleString()}</td>
                <td>{e.actor}</td>
                <td>{e.action}</td>
                <td>{e.target}</td>
                <td>{e.detail}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

export default function AdminPage({
  me,
  onLogout,
  adminApi = defaultAdminApi,
  pollMs = POLL_MS,
}: {
  me: Me;
  onLogout: () => void;
  adminApi?: AdminApi;
  pollMs?: number;
}) {
  const qc = useQueryClient();
  const stats = useQuery({ queryKey: ['admin', 'stats'], queryFn: adminApi.stats, refetchInterval: pollMs, staleTime: 0 });
  const connected = useQuery({
    queryKey: ['admin', 'connections'],
    queryFn: adminApi.connections,
    refetchInterval: pollMs,
    staleTime: 0,
  });
  const audit = useQuery({ queryKey: ['admin', 'audit'], queryFn: adminApi.audit, refetchInterval: pollMs * 5 });
  const [history, setHistory] = useState<Sample[]>([]);
  const last = useRef<{ t: number; delivered: number } | null>(null);
  const [notice, setNotice] = useState<string | null>(null);

  useEffect(() => {
    if (window.location.pathname !== '/admin') window.history.replaceState(null, '', '/admin');
  }, []);

  useEffect(() => {
    if (!stats.data) return;
    const t = stats.dataUpdatedAt / 1000;
    const sample = nextSample(last.current, stats.data, t); // now: the updater runs later
    setHistory((h) => append(h, sample));
    last.current = { t, delivered: stats.data.eventsDelivered };
  }, [stats.data, stats.dataUpdatedAt]);

  const disconnect = useMutation({
    mutationFn: (userId: string) => adminApi.disconnect(userId),
    onSuccess: (r: DisconnectResult, userId) => {
      const name = connected.data?.users.find((u) => u.userId === userId)?.username ?? `userId ${userId}`;
      setNotice(`${name} disconnected: ${r.sessionsRevoked} session(s) revoked, ${r.socketsClosed} socket(s) closed.`);
      void qc.invalidateQueries({ queryKey: ['admin'] });
    },
    onError: (err: Error) => setNotice(`Could not disconnect: ${err.message}`),
  });

  const charts = useMemo(() => {
    const t = history.map((s) => s.t);
    return {
      connections: [t, history.map((s) => s.connections), history.map((s) => s.users)] as [number[], ...(number | null)[][]],
      deliveries: [t, history.map((s) => s.deliveriesPerS)] as [number[], ...(number | null)[][]],
      latency: [t, history.map((s) => s.p50), history.map((s) => s.p95), history.map((s) => s.p99), history.map((s) => s.loopLagP99)] as [
        number[],
        ...(number | null)[][],
      ],
    };
  }, [history]);

  const s = stats.data;
  const latest = history[history.length - 1];
  return (
    <div className="app admin">
      <header className="app-header">
        <h1>
          folio<span className="accent">-stream</span> admin
        </h1>
        <span className="muted" data-testid="poll-status">
          {stats.isError ? `Cannot load stats: ${stats.error.message}` : `Updates every ${pollMs / 1000} s`}
        </span>
        <div className="user">
          <span data-testid="username">{me.username}</span>
          <button type="button" onClick={onLogout} data-testid="logout">
            Sign out
          </button>
        </div>
      </header>
      {notice && (
        <div className="banner banner--warn" role="status" data-testid="admin-notice">
          {notice}
        </div>
      )}
      {!s ? (
        <p className="muted" role="status">
          Loading stats…
        </p>
      ) : (
        <main className="admin-grid">
          <section className="tiles" aria-label="Now">
            <Tile label="Connections" value={String(s.activeConnections)} testId="stat-connections" />
            <Tile label="Users" value={String(s.activeUsers)} testId="stat-users" />
            <Tile
              label="Deliveries/s"
              value={latest?.deliveriesPerS === null || latest === undefined ? '–' : latest.deliveriesPerS.toFixed(1)}
              testId="stat-deliveries"
            />
            <Tile label="Latency p95" value={ms(s.latencyMs.p95)} testId="stat-latency-p95" alert={s.alerts.latencyP95High} />
            <Tile label="Loop lag p99" value={ms(s.loopLagMs.p99)} testId="stat-loop-lag" alert={s.alerts.loopLagP99High} />
            <Tile
              label="Disconnects/min"
              value={String(s.disconnectsLastMinute)}
              testId="stat-disconnects"
              alert={s.alerts.disconnectRateHigh}
            />
            <Tile label="Peak RSS" value={s.maxRssMb === undefined ? '–' : `${s.maxRssMb} MB`} testId="stat-rss" />
          </section>
          <Chart
            title="Connections and users"
            testId="chart-connections"
            unit=""
            series={[
              { label: 'connections', color: '#38bdf8' },
              { label: 'users', color: '#a78bfa' },
            ]}
            data={charts.connections}
          />
          <Chart title="Deliveries per second" testId="chart-deliveries" unit="" series={[{ label: 'deliveries/s', color: '#4ade80' }]} data={charts.deliveries} />
          <Chart
            title="Latency and loop lag (ms)"
            testId="chart-latency"
            unit=""
            series={[
              { label: 'p50', color: '#4ade80' },
              { label: 'p95', color: '#eab308' },
              { label: 'p99', color: '#f87171' },
              { label: 'loop lag p99', color: '#a78bfa' },
            ]}
            data={charts.latency}
          />
          <ProcessesPanel cluster={s.cluster} />
          <AlertsPanel stats={s} />
          <BrokerPanel stats={s} />
          <ClusterPanel stats={s} />
          <section className="card admin-users" aria-labelledby="users-title">
            <h2 id="users-title">Connected users (this process)</h2>
            {!connected.data || connected.data.users.length === 0 ? (
              <p className="muted" data-testid="no-connected-users">
                Nobody is connected.
              </p>
            ) : (
              <table className="admin-table" data-testid="connected-users">
                <thead>
                  <tr>
                    <th scope="col">User</th>
                    <th scope="col">Connections</th>
                    <th scope="col">Connected for</th>
                    <th scope="col">Last seen</th>
                    <th scope="col">
                      <span className="sr-only">Action</span>
                    </th>
                  </tr>
                </thead>
                <tbody>
                  {connected.data.users.map((u) => (
                    <tr key={u.userId} data-testid={`connected-${u.username ?? u.userId}`}>
                      <td>
                        {u.username ?? '(deleted)'} <span className="muted">#{u.userId}</span>
                      </td>
                      <td>{u.connections}</td>
                      <td>{ago(u.connectedSeconds)}</td>
                      <td>{ago(u.lastSeenSeconds)} ago</td>
                      <td>
                        <button
                          type="button"
                          disabled={disconnect.isPending}
                          onClick={() => disconnect.mutate(u.userId)}
                          aria-label={`Disconnect ${u.username ?? u.userId}'s sessions`}
                        >
                          Disconnect sessions
                        </button>
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
            )}
          </section>
          <AuditPanel audit={audit.data} />
        </main>
      )}
    </div>
  );
}
