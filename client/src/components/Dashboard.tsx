import { useEffect, useState } from 'react';
import type { Me, BrokerStatus } from '../lib/schemas';
import { usePortfolioStreamContext } from '../hooks/usePortfolioStream';
import { useRealtimeAccount, useRealtimeOrders, useRealtimePositions, useRealtimeTrades } from '../hooks/useRealtime';
import { AccountSummary } from './AccountSummary';
import { useAnnounce } from './Announcer';
import { ConnectionStatus } from './ConnectionStatus';
import { describeTrade, ExecutionsFeed } from './ExecutionsFeed';
import { OrdersPanel } from './OrdersPanel';
import { PositionsTable } from './PositionsTable';

export function Dashboard({ me, onLogout }: { me: Me; onLogout: () => void }) {
  const { state, subscribe, reconnectNow } = usePortfolioStreamContext();
  const positions = useRealtimePositions();
  const orders = useRealtimeOrders();
  const account = useRealtimeAccount();
  const trades = useRealtimeTrades();
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

  // A failed REST refresh while data is already on screen: say so rather than show stale numbers silently.
  const failed = [positions, orders, account, trades].find((q) => q.isError && q.data !== undefined);
  const refreshError = failed?.error instanceof Error ? failed.error.message : null;

  return (
    <div className="app">
      <header className="app-header">
        <h1>
          folio<span className="accent">-stream</span>
        </h1>
        <ConnectionStatus state={state} onRetry={reconnectNow} />
        <div className="user">
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
      {broker?.stale && (
        <div className="banner banner--warn" role="status" data-testid="broker-stale">
          Broker data may be stale: {broker.message || broker.code}
        </div>
      )}
      <main className="grid">
        <AccountSummary account={account.data?.account} loading={account.isPending} />
        <PositionsTable positions={positions.data?.positions} loading={positions.isPending} fetchedAt={positions.dataUpdatedAt || null} />
        <OrdersPanel orders={orders.data?.orders} loading={orders.isPending} />
        <ExecutionsFeed trades={trades.data?.trades} loading={trades.isPending} />
      </main>
    </div>
  );
}
