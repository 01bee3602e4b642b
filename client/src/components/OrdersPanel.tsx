import type { OrderUpdate } from '../lib/schemas';
import { isOpenOrder } from '../lib/cache';
import { formatPrice, formatQuantity, formatTime } from '../lib/format';

const STATUS_LABELS: Record<string, string> = {
  new: 'New',
  accepted: 'Accepted',
  pending_new: 'Pending',
  partially_filled: 'Partially filled',
  filled: 'Filled',
  canceled: 'Canceled',
  expired: 'Expired',
  rejected: 'Rejected',
  pending_cancel: 'Cancel pending',
  replaced: 'Replaced',
  done_for_day: 'Done for day',
};

export function statusLabel(status: string): string {
  return STATUS_LABELS[status] ?? status.replace(/_/g, ' ');
}

function OrdersTable({ orders, testId, caption }: { orders: OrderUpdate[]; testId: string; caption: string }) {
  return (
    <div className="table-wrap">
      <table data-testid={testId}>
        <caption className="sr-only">{caption}</caption>
        <thead>
          <tr>
            <th scope="col">Time</th>
            <th scope="col">Symbol</th>
            <th scope="col">Side</th>
            <th scope="col">Type</th>
            <th scope="col" className="num">Qty</th>
            <th scope="col" className="num">Filled</th>
            <th scope="col" className="num">Avg price</th>
            <th scope="col">Status</th>
          </tr>
        </thead>
        <tbody>
          {orders.map((o) => (
            <tr key={o.orderId} data-testid="order-row" data-order-id={o.orderId} data-status={o.status}>
              <td>{formatTime(o.submittedAt)}</td>
              <th scope="row">{o.symbol}</th>
              <td>
                <span className={`side side--${o.side}`}>{o.side === 'buy' ? 'Buy' : 'Sell'}</span>
              </td>
              <td>{o.type}</td>
              <td className="num">{formatQuantity(o.qty)}</td>
              <td className="num">{formatQuantity(o.filledQty ?? '0')}</td>
              <td className="num">{o.filledAvgPrice ? formatPrice(o.filledAvgPrice) : '—'}</td>
              <td>
                <span className={`badge badge--${o.status}`}>{statusLabel(o.status)}</span>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

export function OrdersPanel({ orders, loading }: { orders: readonly OrderUpdate[] | undefined; loading: boolean }) {
  const open = (orders ?? []).filter(isOpenOrder);
  const recent = (orders ?? []).filter((o) => !isOpenOrder(o)).slice(0, 20);
  return (
    <section className="card orders" aria-labelledby="orders-title">
      <h2 id="orders-title">Orders</h2>
      {!orders ? (
        <p className="muted">{loading ? 'Loading orders…' : 'Orders unavailable.'}</p>
      ) : (
        <>
          <h3>Open ({open.length})</h3>
          {open.length ? <OrdersTable orders={open} testId="open-orders" caption="Open orders" /> : <p className="muted">No open orders.</p>}
          <h3>Recent</h3>
          {recent.length ? (
            <OrdersTable orders={recent} testId="recent-orders" caption="Recent orders" />
          ) : (
            <p className="muted">No recent orders.</p>
          )}
        </>
      )}
    </section>
  );
}
