import type { PositionUpdate } from '../lib/schemas';
import { formatAgo, formatMoney, formatPercent, formatPrice, formatQuantity } from '../lib/format';
import { useNow } from '../hooks/useNow';
import { PnlValue } from './PnlValue';

function updatedMs(p: PositionUpdate, fallback: number | null): number | null {
  const t = p.updatedAt ? Date.parse(p.updatedAt) : NaN;
  return Number.isNaN(t) ? fallback : t;
}

export function PositionsTable({
  positions,
  loading,
  fetchedAt,
}: {
  positions: readonly PositionUpdate[] | undefined;
  loading: boolean;
  fetchedAt: number | null;
}) {
  const now = useNow(1000);
  return (
    <section className="card positions" aria-labelledby="positions-title">
      <h2 id="positions-title">Positions</h2>
      {!positions ? (
        <p className="muted">{loading ? 'Loading positions…' : 'Positions unavailable.'}</p>
      ) : positions.length === 0 ? (
        <p className="muted">No open positions.</p>
      ) : (
        <div className="table-wrap">
          <table data-testid="positions-table">
            <thead>
              <tr>
                <th scope="col">Symbol</th>
                <th scope="col">Side</th>
                <th scope="col" className="num">Qty</th>
                <th scope="col" className="num">Entry</th>
                <th scope="col" className="num">Current</th>
                <th scope="col" className="num">Market value</th>
                <th scope="col" className="num">Unrealized P&amp;L</th>
                <th scope="col" className="num">P&amp;L %</th>
                <th scope="col">Last updated</th>
              </tr>
            </thead>
            <tbody>
              {positions.map((p) => {
                const at = updatedMs(p, fetchedAt);
                return (
                  <tr key={p.symbol} data-testid={`position-${p.symbol}`} data-symbol={p.symbol}>
                    <th scope="row">{p.symbol}</th>
                    <td>
                      <span className={`side side--${p.side}`}>{p.side === 'long' ? 'Long' : 'Short'}</span>
                    </td>
                    <td className="num">{formatQuantity(p.quantity)}</td>
                    <td className="num">{formatPrice(p.entryPrice)}</td>
                    <td className="num" data-testid="current-price">{formatPrice(p.currentPrice)}</td>
                    <td className="num">{formatMoney(p.marketValue)}</td>
                    <td className="num">
                      <PnlValue value={p.unrealizedPnl} testId="unrealized-pnl">
                        {formatMoney(p.unrealizedPnl, { signed: true })}
                      </PnlValue>
                    </td>
                    <td className="num">
                      <PnlValue value={p.unrealizedPnlPercent}>{formatPercent(p.unrealizedPnlPercent, { signed: true })}</PnlValue>
                    </td>
                    <td className="muted" data-testid="last-updated">
                      {at === null ? '—' : `Last updated ${formatAgo(now - at)}`}
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}
