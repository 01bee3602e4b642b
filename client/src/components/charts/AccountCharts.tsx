// The day's equity and day-P&L lines (lazy chunk): the server's recorded points
// (GET /api/account/history?period=1D) plus the live account updates, from the query cache.
import { useMemo } from 'react';
import type { AccountPoint } from '../../lib/schemas';
import { formatMoney } from '../../lib/format';
import { useTheme } from '../../hooks/useTheme';
import { UPlotChart } from './UPlotChart';

const money = (v: number) => formatMoney(v.toFixed(2));

export default function AccountCharts({ points }: { points: readonly AccountPoint[] }) {
  const { resolved } = useTheme();
  const data = useMemo(() => {
    const times = points.map((p) => Date.parse(p.timestamp) / 1000);
    return {
      times,
      equity: [{ label: 'Equity', colorVar: '--accent', values: points.map((p) => Number(p.equity)) }],
      pnl: [{ label: 'Day P&L', colorVar: '--chart-pnl', values: points.map((p) => (p.dayPnl == null ? null : Number(p.dayPnl))) }],
    };
  }, [points]);
  const first = points[0];
  const last = points[points.length - 1];
  const summary =
    first && last ? `from ${formatMoney(first.equity)} to ${formatMoney(last.equity)}, ${points.length} points` : 'no points yet';
  return (
    <div className="charts">
      <figure className="chart" role="img" aria-label={`Equity today ${summary}`} data-testid="equity-chart" data-points={points.length}>
        <figcaption>Equity</figcaption>
        <UPlotChart times={data.times} series={data.equity} height={160} format={money} theme={resolved} />
      </figure>
      <figure className="chart" role="img" aria-label={`Day P&L today, ${points.length} points`} data-testid="pnl-chart">
        <figcaption>Day P&amp;L</figcaption>
        <UPlotChart times={data.times} series={data.pnl} height={160} format={money} theme={resolved} />
      </figure>
    </div>
  );
}
