// A position's price during this session, as a tiny uPlot line (lazy chunk).
import { useMemo } from 'react';
import type { PricePoint } from '../../lib/history';
import { useTheme } from '../../hooks/useTheme';
import { UPlotChart } from './UPlotChart';

export default function Sparkline({ points, label }: { points: readonly PricePoint[]; label: string }) {
  const { resolved } = useTheme();
  const data = useMemo(
    () => ({
      times: points.map((p) => Date.parse(p.timestamp) / 1000),
      series: [{ label: 'Price', colorVar: '--accent', values: points.map((p) => Number(p.price)) }],
    }),
    [points],
  );
  if (points.length < 2) return <span className="muted spark-empty" aria-hidden="true" />;
  return (
    <span className="sparkline" role="img" aria-label={`${label}: ${points.length} prices`} data-points={points.length}>
      <UPlotChart times={data.times} series={data.series} height={28} axes={false} theme={resolved} />
    </span>
  );
}
