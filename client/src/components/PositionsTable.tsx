// Positions with TanStack Table: sortable columns (a button in each header, aria-sort on the
// header cell), a totals row, cost basis, allocation and realized P&L. On a phone the rows are
// shown as cards (styles.css), never wider than the screen.
import { lazy, Suspense, useMemo, useState } from 'react';
import {
  createColumnHelper,
  flexRender,
  getCoreRowModel,
  getSortedRowModel,
  useReactTable,
  type SortingFn,
  type SortingState,
} from '@tanstack/react-table';
import type { PositionUpdate } from '../lib/schemas';
import { compareDecimal } from '../lib/decimal';
import { formatMoney, formatPercent, formatPrice, formatQuantity, formatUtc, PLACEHOLDER } from '../lib/format';
import { positionRows, positionTotals, updatedLabel, type PositionRow } from '../lib/positions';
import type { PriceHistory } from '../lib/history';
import { useNow } from '../hooks/useNow';
import { PnlValue } from './PnlValue';

const Sparkline = lazy(() => import('./charts/Sparkline'));

/** Sorts decimal strings exactly; a missing value sorts below every number. */
export const decimalSort: SortingFn<PositionRow> = (a, b, id) => {
  const x = a.getValue<string | null | undefined>(id);
  const y = b.getValue<string | null | undefined>(id);
  if (x == null || y == null) return x == null ? (y == null ? 0 : -1) : 1;
  return compareDecimal(x, y);
};

const col = createColumnHelper<PositionRow>();

function updatedMs(p: PositionUpdate, fallback: number | null): number | null {
  const t = p.updatedAt ? Date.parse(p.updatedAt) : NaN;
  return Number.isNaN(t) ? fallback : t;
}

function money(v: string | null | undefined, testId?: string) {
  if (v == null) return <span data-testid={testId}>{PLACEHOLDER}</span>;
  return (
    <PnlValue value={v} testId={testId}>
      {formatMoney(v, { signed: true })}
    </PnlValue>
  );
}

export interface PositionsTableProps {
  positions: readonly PositionUpdate[] | undefined;
  loading: boolean;
  fetchedAt: number | null;
  equity?: string | null;
  prices?: PriceHistory;
  filtered?: boolean;
}

export function PositionsTable({ positions, loading, fetchedAt, equity, prices, filtered }: PositionsTableProps) {
  const now = useNow(1000);
  const [sorting, setSorting] = useState<SortingState>([{ id: 'symbol', desc: false }]);
  // the day change depends on the last close: recomputed when the minute changes, not every tick
  const minute = Math.floor(now / 60_000);
  const rows = useMemo(() => positionRows(positions ?? [], equity, minute * 60_000), [positions, equity, minute]);
  const totals = useMemo(() => positionTotals(rows, equity), [rows, equity]);
  const hasRealized = totals.realizedPnl !== null;

  const columns = useMemo(
    () => [
      col.accessor('symbol', {
        header: 'Symbol',
        sortingFn: 'alphanumeric',
        cell: (c) => c.getValue(),
      }),
      col.accessor('side', { header: 'Side', cell: (c) => <span className={`side side--${c.getValue()}`}>{c.getValue() === 'long' ? 'Long' : 'Short'}</span> }),
      col.accessor('quantity', { header: 'Qty', sortingFn: decimalSort, meta: { num: true }, cell: (c) => formatQuantity(c.getValue()) }),
      col.accessor('entryPrice', { header: 'Entry', sortingFn: decimalSort, meta: { num: true }, cell: (c) => formatPrice(c.getValue()) }),
      col.accessor('currentPrice', {
        header: 'Current',
        sortingFn: decimalSort,
        meta: { num: true, testId: 'current-price' },
        cell: (c) => formatPrice(c.getValue()),
      }),
      col.accessor('costBasis', { header: 'Cost basis', sortingFn: decimalSort, meta: { num: true }, cell: (c) => formatMoney(c.getValue()) }),
      col.accessor('marketValue', { header: 'Market value', sortingFn: decimalSort, meta: { num: true }, cell: (c) => formatMoney(c.getValue()) }),
      col.accessor('allocationPercent', {
        header: 'Allocation',
        sortingFn: decimalSort,
        meta: { num: true },
        cell: (c) => formatPercent(c.getValue()),
      }),
      col.accessor('unrealizedPnl', {
        header: 'Unrealized P&L',
        sortingFn: decimalSort,
        meta: { num: true },
        cell: (c) => money(c.getValue(), 'unrealized-pnl'),
      }),
      col.accessor('unrealizedPnlPercent', {
        header: 'P&L %',
        sortingFn: decimalSort,
        meta: { num: true },
        cell: (c) => <PnlValue value={c.getValue()}>{formatPercent(c.getValue(), { signed: true })}</PnlValue>,
      }),
      col.accessor((r) => r.realizedPnl ?? null, {
        id: 'realizedPnl',
        header: 'Realized P&L',
        sortingFn: decimalSort,
        meta: { num: true },
        cell: (c) => money(c.getValue(), 'realized-pnl'),
      }),
      col.accessor('dayChange', {
        header: 'Day change',
        sortingFn: decimalSort,
        meta: { num: true },
        cell: (c) => (
          <span title={c.getValue() == null ? 'Unknown: held since before the last close, whose price the server does not have yet' : undefined}>
            {money(c.getValue(), 'day-change')}
          </span>
        ),
      }),
      col.accessor((r) => r.realizedPnlToday ?? null, {
        id: 'realizedPnlToday',
        header: 'Realized today',
        sortingFn: decimalSort,
        meta: { num: true },
        cell: (c) => money(c.getValue(), 'realized-pnl-today'),
      }),
    ],
    [],
  );

  const table = useReactTable({
    data: rows,
    columns,
    state: {
      sorting,
      columnVisibility: {
        realizedPnl: hasRealized,
        realizedPnlToday: totals.realizedPnlToday !== null,
        dayChange: rows.some((r) => r.dayChange !== null),
      },
    },
    onSortingChange: setSorting,
    getCoreRowModel: getCoreRowModel(),
    getSortedRowModel: getSortedRowModel(),
    getRowId: (r) => r.symbol,
    enableSortingRemoval: false,
  });

  const totalCells: Record<string, React.ReactNode> = {
    symbol: 'Total',
    costBasis: formatMoney(totals.costBasis),
    marketValue: <span data-testid="total-market-value">{formatMoney(totals.marketValue)}</span>,
    allocationPercent: formatPercent(totals.allocationPercent),
    unrealizedPnl: money(totals.unrealizedPnl, 'total-unrealized-pnl'),
    realizedPnl: money(totals.realizedPnl, 'total-realized-pnl'),
    realizedPnlToday: money(totals.realizedPnlToday, 'total-realized-pnl-today'),
    dayChange: money(totals.dayChange, 'total-day-change'),
  };

  return (
    <section className="card positions" aria-labelledby="positions-title">
      <h2 id="positions-title">Positions</h2>
      {!positions ? (
        <p className="muted">{loading ? 'Loading positions…' : 'Positions unavailable.'}</p>
      ) : positions.length === 0 ? (
        <p className="muted">{filtered ? 'No open positions in these symbols.' : 'No open positions.'}</p>
      ) : (
        <div className="table-wrap">
          <table data-testid="positions-table" className="cards-on-phone sortable">
            <caption className="sr-only">Open positions; column headers sort the rows</caption>
            <thead>
              {table.getHeaderGroups().map((hg) => (
                <tr key={hg.id}>
                  {hg.headers.map((h) => {
                    const sorted = h.column.getIsSorted();
                    const meta = h.column.columnDef.meta as { num?: boolean } | undefined;
                    return (
                      <th
                        key={h.id}
                        scope="col"
                        className={meta?.num ? 'num' : undefined}
                        aria-sort={sorted === 'asc' ? 'ascending' : sorted === 'desc' ? 'descending' : 'none'}
                        data-column={h.column.id}
                      >
                        <button
                          type="button"
                          className="sort-button"
                          onClick={h.column.getToggleSortingHandler()}
                          data-testid={`sort-${h.column.id}`}
                        >
                          {flexRender(h.column.columnDef.header, h.getContext())}
                          <span aria-hidden="true" className="sort-arrow">
                            {sorted === 'asc' ? ' ▲' : sorted === 'desc' ? ' ▼' : ' ↕'}
                          </span>
                        </button>
                      </th>
                    );
                  })}
                  <th scope="col">Trend</th>
                  <th scope="col">
                    <span className="sr-only">Last updated</span>
                  </th>
                </tr>
              ))}
            </thead>
            <tbody>
              {table.getRowModel().rows.map((row) => {
                const p = row.original;
                const at = updatedMs(p, fetchedAt);
                const updated = updatedLabel(at === null ? null : now - at);
                return (
                  <tr key={row.id} data-testid={`position-${p.symbol}`} data-symbol={p.symbol} data-unrealized-pnl={p.unrealizedPnl}>
                    {row.getVisibleCells().map((cell) => {
                      const meta = cell.column.columnDef.meta as { num?: boolean; testId?: string } | undefined;
                      const label = String(cell.column.columnDef.header);
                      if (cell.column.id === 'symbol') {
                        return (
                          <th key={cell.id} scope="row" data-label={label}>
                            {p.symbol}
                          </th>
                        );
                      }
                      return (
                        <td key={cell.id} className={meta?.num ? 'num' : undefined} data-label={label} data-testid={meta?.testId}>
                          {flexRender(cell.column.columnDef.cell, cell.getContext())}
                        </td>
                      );
                    })}
                    <td data-label="Trend" className="spark-cell">
                      <Suspense fallback={null}>
                        <Sparkline points={prices?.[p.symbol] ?? []} label={`${p.symbol} price this session`} />
                      </Suspense>
                    </td>
                    <td
                      className={`updated${updated.stale ? ' updated--stale' : ''}`}
                      data-testid="last-updated"
                      data-label="Updated"
                      title={p.updatedAt ? formatUtc(p.updatedAt) : undefined}
                    >
                      {updated.text}
                    </td>
                  </tr>
                );
              })}
            </tbody>
            <tfoot>
              <tr data-testid="positions-totals">
                {table.getVisibleLeafColumns().map((c) => {
                  const meta = c.columnDef.meta as { num?: boolean } | undefined;
                  const content = totalCells[c.id];
                  if (c.id === 'symbol') {
                    return (
                      <th key={c.id} scope="row">
                        Total
                      </th>
                    );
                  }
                  return (
                    <td key={c.id} className={`${meta?.num ? 'num' : ''}${content === undefined ? ' empty' : ''}`} data-label={String(c.columnDef.header)}>
                      {content ?? ''}
                    </td>
                  );
                })}
                <td className="empty" />
                <td className="empty" />
              </tr>
            </tfoot>
          </table>
        </div>
      )}
    </section>
  );
}
