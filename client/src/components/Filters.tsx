import { formatUtc } from '../lib/format';

export type SideFilter = 'all' | 'buy' | 'sell';

/** Buy/sell filter for the orders and executions lists. */
export function SideSelect({ id, value, onChange }: { id: string; value: SideFilter; onChange: (v: SideFilter) => void }) {
  return (
    <label className="inline-field" htmlFor={id}>
      Side
      <select id={id} value={value} onChange={(e) => onChange(e.target.value as SideFilter)} data-testid={id}>
        <option value="all">All</option>
        <option value="buy">Buy</option>
        <option value="sell">Sell</option>
      </select>
    </label>
  );
}

/** "Page 2 of 5" with previous/next buttons; nothing when one page is enough. */
export function Pager({ page, pages, onPage, label }: { page: number; pages: number; onPage: (p: number) => void; label: string }) {
  if (pages <= 1) return null;
  return (
    <nav className="pager" aria-label={label}>
      <button type="button" className="secondary" disabled={page <= 0} onClick={() => onPage(page - 1)}>
        Previous
      </button>
      <span aria-live="polite">
        Page {page + 1} of {pages}
      </span>
      <button type="button" className="secondary" disabled={page >= pages - 1} onClick={() => onPage(page + 1)}>
        Next
      </button>
    </nav>
  );
}

/** A date and time in the browser's zone, the UTC form on hover. */
export function Timestamp({ iso, format }: { iso: string | null | undefined; format: (iso: string | null | undefined) => string }) {
  if (!iso) return <span>—</span>;
  return <time dateTime={iso} title={formatUtc(iso)}>{format(iso)}</time>;
}
