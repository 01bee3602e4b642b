import { useState } from 'react';
import { AnimatePresence, motion } from 'framer-motion';
import type { TradeExecuted } from '../lib/schemas';
import { formatDateTime, formatPrice, formatQuantity } from '../lib/format';
import { usePrefersReducedMotion } from '../hooks/useReducedMotion';
import { SideSelect, Timestamp, type SideFilter } from './Filters';

/** Executions shown at first, and added by each "Show more". */
export const EXECUTIONS_STEP = 10;

export function describeTrade(t: TradeExecuted): string {
  const verb = t.side === 'buy' ? 'Bought' : 'Sold';
  return `${verb} ${formatQuantity(t.qty)} ${t.symbol} at ${formatPrice(t.price)}${t.partial ? ' (partial fill)' : ''}`;
}

/**
 * Newest first, whole rows only (no scroll box cutting a line in half): the first 10, then
 * "Show more" adds 10 at a time up to the 50 the client keeps.
 */
export function ExecutionsFeed({ trades, loading }: { trades: readonly TradeExecuted[] | undefined; loading: boolean }) {
  const reduced = usePrefersReducedMotion();
  const [side, setSide] = useState<SideFilter>('all');
  const [limit, setLimit] = useState(EXECUTIONS_STEP);
  const newestFirst = [...(trades ?? [])].reverse().filter((t) => side === 'all' || t.side === side);
  const shown = newestFirst.slice(0, limit);
  return (
    <section className="card executions" aria-labelledby="executions-title">
      <div className="card-head">
        <h2 id="executions-title">Executions</h2>
        <SideSelect id="executions-side" value={side} onChange={setSide} />
      </div>
      {!trades ? (
        <p className="muted">{loading ? 'Loading executions…' : 'Executions unavailable.'}</p>
      ) : newestFirst.length === 0 ? (
        <p className="muted">No executions yet.</p>
      ) : (
        <>
          <ol className="feed" data-testid="executions-feed">
            <AnimatePresence initial={false}>
              {shown.map((t) => (
                <motion.li
                  key={t.executionId}
                  data-testid="execution"
                  data-execution-id={t.executionId}
                  data-order-id={t.orderId}
                  data-symbol={t.symbol}
                  data-side={t.side}
                  data-qty={t.qty}
                  data-price={t.price}
                  data-position-qty={t.positionQty ?? undefined}
                  initial={reduced ? { opacity: 0 } : { opacity: 0, y: -6 }}
                  animate={reduced ? { opacity: 1 } : { opacity: 1, y: 0 }}
                  transition={{ duration: 0.25 }}
                >
                  <span className={`side side--${t.side}`} aria-hidden="true">
                    {t.side === 'buy' ? '▲ BUY' : '▼ SELL'}
                  </span>{' '}
                  <span className="feed-text">{describeTrade(t)}</span>{' '}
                  <span className="muted feed-time">
                    <Timestamp iso={t.timestamp} format={formatDateTime} />
                  </span>
                </motion.li>
              ))}
            </AnimatePresence>
          </ol>
          {newestFirst.length > shown.length && (
            <button type="button" className="secondary show-more" onClick={() => setLimit(limit + EXECUTIONS_STEP)}>
              Show more ({newestFirst.length - shown.length} older)
            </button>
          )}
        </>
      )}
    </section>
  );
}
