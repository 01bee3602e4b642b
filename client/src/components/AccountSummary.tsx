import type { AccountUpdate } from '../lib/schemas';
import { formatMoney, formatPercent } from '../lib/format';
import { PnlValue } from './PnlValue';

export function AccountSummary({ account, loading }: { account: AccountUpdate | null | undefined; loading: boolean }) {
  if (!account) {
    return (
      <section className="card account" aria-labelledby="account-title">
        <h2 id="account-title">Account</h2>
        <p className="muted">{loading ? 'Loading account…' : 'No account data yet.'}</p>
      </section>
    );
  }
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
            <PnlValue value={account.dayPnl} testId="day-pnl">
              {formatMoney(account.dayPnl, { signed: true })} ({formatPercent(account.dayPnlPercent, { signed: true })})
            </PnlValue>
          </dd>
        </div>
      </dl>
    </section>
  );
}
