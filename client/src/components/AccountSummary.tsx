import type { AccountUpdate } from '../lib/schemas';
import { subtractDecimals } from '../lib/decimal';
import { formatMoney, formatPercent } from '../lib/format';
import { PnlValue } from './PnlValue';

/**
 * Equity, buying power, cash, day P&L and realized P&L today. Day P&L is the broker's
 * equity − last_equity; when the server knows the realized part (issue 8's realizedPnlToday) it is
 * split into realized today + the unrealized change (the rest). A day P&L the server cannot
 * compute (null: last_equity unknown) is shown as unknown, never as 0.
 */
export function AccountSummary({ account, loading }: { account: AccountUpdate | null | undefined; loading: boolean }) {
  if (!account) {
    return (
      <section className="card account" aria-labelledby="account-title">
        <h2 id="account-title">Account</h2>
        <p className="muted">{loading ? 'Loading account…' : 'No account data yet.'}</p>
      </section>
    );
  }
  const realized = account.realizedPnlToday ?? null;
  const unrealizedChange = account.dayPnl != null && realized != null ? subtractDecimals(account.dayPnl, realized) : null;
  return (
    <section className="card account" aria-labelledby="account-title" data-testid="account-summary">
      <h2 id="account-title">Account</h2>
      <dl className="metrics">
        <div className="metric">
          <dt>Equity</dt>
          <dd data-testid="equity">{formatMoney(account.equity)}</dd>
        </div>
        <div className="metric">
          <dt>Buying power</dt>
          <dd data-testid="buying-power">{formatMoney(account.buyingPower)}</dd>
        </div>
        <div className="metric">
          <dt>Cash</dt>
          <dd data-testid="cash">{formatMoney(account.cash)}</dd>
        </div>
        <div className="metric">
          <dt>Day P&amp;L</dt>
          <dd>
            {account.dayPnl == null ? (
              <span data-testid="day-pnl" data-unknown="true" title="The broker has not reported yesterday's closing equity">
                Unknown
              </span>
            ) : (
              <PnlValue value={account.dayPnl} testId="day-pnl">
                {formatMoney(account.dayPnl, { signed: true })}
                {account.dayPnlPercent != null && ` (${formatPercent(account.dayPnlPercent, { signed: true })})`}
              </PnlValue>
            )}
          </dd>
        </div>
        <div className="metric">
          <dt>Realized today</dt>
          <dd>
            {realized == null ? (
              <span data-testid="realized-today" title="Not reported by this server">
                —
              </span>
            ) : (
              <PnlValue value={realized} testId="realized-today">
                {formatMoney(realized, { signed: true })}
              </PnlValue>
            )}
          </dd>
        </div>
        <div className="metric">
          <dt>Unrealized change today</dt>
          <dd>
            {unrealizedChange == null ? (
              <span data-testid="unrealized-change">—</span>
            ) : (
              <PnlValue value={unrealizedChange} testId="unrealized-change">
                {formatMoney(unrealizedChange, { signed: true })}
              </PnlValue>
            )}
          </dd>
        </div>
      </dl>
    </section>
  );
}
