import { useEffect, useState } from 'react';
import type { OrderUpdate } from '../lib/schemas';
import { isOpenOrder } from '../lib/cache';
import { formatDateTime, formatPrice, formatQuantity } from '../lib/format';
import { Pager, SideSelect, Timestamp, type SideFilter } from './Filters';

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

/** Recent (closed) orders per page. */
export const ORDERS_PAGE_SIZE = 20;

export function statusLabel(status: string): string {
  return STATUS_LABELS[status] ?? status.replace(/_/g, ' ');
}

function OrdersTable({ orders, testId, caption }: { orders: OrderUpdate[]; testId: string; caption: string }) {
  return (
    <div className="table-wrap">
      <table data-testid={testId} className="cards-on-phone">
        <caption className="sr-only">{caption}</caption>
        <thead>
          <tr>
            <th scope="col">Submitted</th>
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
              <td data-label="Submitted">
                <Timestamp iso={o.submittedAt} format={formatDateTime} />
              </td>
              <th scope="row" data-label="Symbol">
                {o.symbol}
              </th>
              <td data-label="Side">
                <span className={`side side--${o.side}`}>{o.side === 'buy' ? 'Buy' : 'Sell'}</span>
              </td>
              <td data-label="Type">{o.type}</td>
              <td className="num" data-label="Qty">
                {formatQuantity(o.qty)}
              </td>
              <td className="num" data-label="Filled">
                {formatQuantity(o.filledQty ?? '0')}
              </td>
              <td className="num" data-label="Avg price">
                {o.filledAvgPrice ? formatPrice(o.filledAvgPrice) : '—'}
              </td>
              <td data-label="Status">
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
  const [side, setSide] = useState<SideFilter>('all');
  const [page, setPage] = useState(0);
  const shown = (orders ?? []).filter((o) => side === 'all' || o.side === side);
  const open = shown.filter(isOpenOrder);
  const closed = shown.filter((o) => !isOpenOrder(o));
  const pages = Math.max(1, Math.ceil(closed.length / ORDERS_PAGE_SIZE));
  const current = Math.min(page, pages - 1);
  useEffect(() => setPage(0), [side]);
  const recent = closed.slice(current * ORDERS_PAGE_SIZE, (current + 1) * ORDERS_PAGE_SIZE);
  return (
    <section className="card orders" aria-labelledby="orders-title">
      <div className="card-head">
        <h2 id="orders-title">Orders</h2>
        <SideSelect id="orders-side" value={side} onChange={setSide} />
      </div>
      {!orders ? (
        <p className="muted">{loading ? 'Loading orders…' : 'Orders unavailable.'}</p>
      ) : (
        <>
          <h3>Open ({open.length})</h3>
          {open.length ? <OrdersTable orders={open} testId="open-orders" caption="Open orders" /> : <p className="muted">No open orders.</p>}
          <h3>Recent ({closed.length})</h3>
          {recent.length ? (
            <OrdersTable orders={recent} testId="recent-orders" caption={`Recent orders, page ${current + 1} of ${pages}`} />
          ) : (
            <p className="muted">No recent orders.</p>
          )}
          <Pager page={current} pages={pages} onPage={setPage} label="Recent orders pages" />
        </>
      )}
    </section>
  );
}
