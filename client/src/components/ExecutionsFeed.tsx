import { AnimatePresence, motion } from 'framer-motion';
import type { TradeExecuted } from '../lib/schemas';
import { formatPrice, formatQuantity, formatTime } from '../lib/format';
import { usePrefersReducedMotion } from '../hooks/useReducedMotion';

export function describeTrade(t: TradeExecuted): string {
  const verb = t.side === 'buy' ? 'Bought' : 'Sold';
  return `${verb} ${formatQuantity(t.qty)} ${t.symbol} at ${formatPrice(t.price)}${t.partial ? ' (partial fill)' : ''}`;
}

export function ExecutionsFeed({ trades, loading }: { trades: readonly TradeExecuted[] | undefined; loading: boolean }) {
  const reduced = usePrefersReducedMotion();
  const newestFirst = [...(trades ?? [])].reverse();
  return (
    <section className="card executions" aria-labelledby="executions-title">
      <h2 id="executions-title">Executions</h2>
      {!trades ? (
        <p className="muted">{loading ? 'Loading executions…' : 'Executions unavailable.'}</p>
      ) : newestFirst.length === 0 ? (
        <p className="muted">No executions yet.</p>
      ) : (
        <ol className="feed" data-testid="executions-feed">
          <AnimatePresence initial={false}>
            {newestFirst.map((t) => (
              <motion.li
                key={t.executionId}
                data-testid="execution"
                data-execution-id={t.executionId}
                data-order-id={t.orderId}
                initial={reduced ? { opacity: 0 } : { opacity: 0, y: -6 }}
                animate={reduced ? { opacity: 1 } : { opacity: 1, y: 0 }}
                transition={{ duration: 0.25 }}
              >
                <span className={`side side--${t.side}`} aria-hidden="true">
                  {t.side === 'buy' ? '▲ BUY' : '▼ SELL'}
                </span>{' '}
                <span className="feed-text">{describeTrade(t)}</span>{' '}
                <time className="muted" dateTime={t.timestamp}>
                  {formatTime(t.timestamp)}
                </time>
              </motion.li>
            ))}
          </AnimatePresence>
        </ol>
      )}
    </section>
  );
}
