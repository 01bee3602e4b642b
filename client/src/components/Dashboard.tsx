import { lazy, Suspense, useEffect, useRef, useState } from 'react';
import type { Me, BrokerStatus } from '../lib/schemas';
import { parseSymbolFilter } from '../lib/positions';
import { usePortfolioStreamContext } from '../hooks/usePortfolioStream';
import { useRealtimeAccount, useRealtimeOrders, useRealtimePositions, useRealtimeTrades } from '../hooks/useRealtime';
import { useAccountHistory, useHistoryFeed, usePriceHistory } from '../hooks/useHistory';
import { AccountSummary } from './AccountSummary';
import { useAnnounce } from './Announcer';
import { ConnectionStatus } from './ConnectionStatus';
import { describeTrade, ExecutionsFeed } from './ExecutionsFeed';
import { OrdersPanel } from './OrdersPanel';
import { PositionsTable } from './PositionsTable';
import { ThemeToggle } from './ThemeToggle';

export const ENGINE_PAUSED_TEXT = "Live updates paused — reconnecting to the server's message bus";
export const ENGINE_RESUMED_TEXT = 'Live updates resumed';

// The charts (uPlot) are a separate chunk, loaded after the dashboard's first paint.
const AccountCharts = lazy(() => import('./charts/AccountCharts'));

function SymbolFilter() {
  const { symbols, setSymbols } = usePortfolioStreamContext();
  const [text, setText] = useState(symbols?.join(', ') ?? '');
  return (
    <form
      className="symbol-filter"
      role="search"
      onSubmit={(e) => {
        e.preventDefault();
        setSymbols(parseSymbolFilter(text));
      }}
    >
      <label htmlFor="symbol-filter">Symbols</label>
      <input
        id="symbol-filter"
        data-testid="symbol-filter"
        value={text}
        placeholder="All symbols, e.g. AAPL, MSFT"
        autoComplete="off"
        spellCheck={false}
        onChange={(e) => setText(e.target.value)}
      />
      <button type="submit">Filter</button>
      {symbols && (
        <button
          type="button"
          className="secondary"
          onClick={() => {
            setText('');
            setSymbols(null);
          }}
        >
          Clear
        </button>
      )}
    </form>
  );
}

export function Dashboard({ me, onLogout }: { me: Me; onLogout: () => void }) {
  const { state, subscribe, reconnectNow, symbols } = usePortfolioStreamContext();
  const positions = useRealtimePositions();
  const orders = useRealtimeOrders();
  const account = useRealtimeAccount();
  const trades = useRealtimeTrades();
  useHistoryFeed();
  const history = useAccountHistory();
  const prices = usePriceHistory();
  const announce = useAnnounce();
  const [broker, setBroker] = useState<BrokerStatus | null>(null);

  useEffect(
    () =>
      subscribe(null, (msg) => {
        if (msg.type === 'trade_executed') announce(describeTrade(msg.data));
        else if (msg.type === 'status') {
          setBroker(msg.data);
          if (msg.data.message) announce(msg.data.message);
        }
      }),
    [subscribe, announce],
  );

  // The server's message bus (notice engine_down / engine_ok): announced when it changes.
  const engineDegraded = state.engineDegraded;
  const wasDegraded = useRef(engineDegraded);
  useEffect(() => {
    if (wasDegraded.current === engineDegraded) return;
    wasDegraded.current = engineDegraded;
    announce(engineDegraded ? ENGINE_PAUSED_TEXT : ENGINE_RESUMED_TEXT);
  }, [engineDegraded, announce]);

  // A failed REST refresh while data is already on screen: say so rather than show stale numbers silently.
  const failed = [positions, orders, account, trades].find((q) => q.isError && q.data !== undefined);
  const refreshError = failed?.error instanceof Error ? failed.error.message : null;
  // Closed orders and trades kept from before a filter change are narrowed here too.
  const wanted = symbols ? new Set(symbols) : null;
  const shownOrders = wanted ? orders.data?.orders.filter((o) => wanted.has(o.symbol)) : orders.data?.orders;
  const shownTrades = wanted ? trades.data?.trades.filter((t) => wanted.has(t.symbol)) : trades.data?.trades;
  const shownPositions = wanted ? positions.data?.positions.filter((p) => wanted.has(p.symbol)) : positions.data?.positions;

  return (
    <div className="app">
      <header className="app-header">
        <h1>
          folio<span className="accent">-stream</span>
        </h1>
        <ConnectionStatus state={state} onRetry={reconnectNow} />
        <div className="user">
          <ThemeToggle />
          <span data-testid="username">{me.username}</span>
          <button type="button" onClick={onLogout} data-testid="logout">
            Sign out
          </button>
        </div>
      </header>
      {state.mode === 'polling' && (
        <div className="banner banner--warn" role="status" data-testid="backup-banner">
          Using backup connection: live updates are unavailable, so the dashboard refreshes every 5 seconds.
        </div>
      )}
      {refreshError && (
        <div className="banner banner--error" role="status" data-testid="refresh-error">
          Cannot refresh from the server right now ({refreshError}); showing the last data received.
        </div>
      )}
      {engineDegraded && (
        <div className="banner banner--warn" role="status" data-testid="engine-paused">
          {ENGINE_PAUSED_TEXT}
        </div>
      )}
      {broker?.stale && (
        <div className="banner banner--warn" role="status" data-testid="broker-stale">
          Broker data may be stale: {broker.message || broker.code}
        </div>
      )}
      <main className="grid">
        <AccountSummary account={account.data?.account} loading={account.isPending} />
        <section className="card charts-card" aria-labelledby="charts-title">
          <h2 id="charts-title">Today</h2>
          {history.data ? (
            <Suspense fallback={<p className="muted">Loading charts…</p>}>
              <AccountCharts points={history.data.points} />
            </Suspense>
          ) : (
            <p className="muted">{history.isError ? 'Chart history unavailable.' : 'Loading charts…'}</p>
          )}
        </section>
        <SymbolFilter />
        <PositionsTable
          positions={shownPositions}
          loading={positions.isPending}
          fetchedAt={positions.dataUpdatedAt || null}
          equity={account.data?.account?.equity}
          prices={prices}
          filtered={!!symbols}
        />
        <OrdersPanel orders={shownOrders} loading={orders.isPending} />
        <ExecutionsFeed trades={shownTrades} loading={trades.isPending} />
      </main>
    </div>
  );
}
