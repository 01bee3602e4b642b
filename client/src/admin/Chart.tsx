// A small time-series chart drawn by uPlot (a well-kept, ~50 KB canvas chart library): created
// once per mount, fed new data on every poll with setData (no re-creation, no flicker).
import { useEffect, useRef } from 'react';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';

export interface Series {
  label: string;
  color: string;
}

export function Chart({
  title,
  series,
  data,
  unit,
  testId,
}: {
  title: string;
  series: Series[];
  data: [number[], ...(number | null)[][]];
  unit: string;
  testId: string;
}) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);

  useEffect(() => {
    if (!box.current) return undefined;
    const opts: uPlot.Options = {
      width: Math.max(280, box.current.clientWidth || 480),
      height: 180,
      series: [{}, ...series.map((s) => ({ label: s.label, stroke: s.color, width: 2, spanGaps: true }))],
      axes: [
        { stroke: '#94a3b8', grid: { stroke: '#1e2a44' } },
        { stroke: '#94a3b8', grid: { stroke: '#1e2a44' }, values: (_u, ticks) => ticks.map((v) => `${v}${unit}`) },
      ],
      legend: { show: true },
    };
    plot.current = new uPlot(opts, data as uPlot.AlignedData, box.current);
    return () => {
      plot.current?.destroy();
      plot.current = null;
    };
    // Created once: data updates go through setData below.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, []);

  useEffect(() => {
    plot.current?.setData(data as uPlot.AlignedData);
  }, [data]);

  return (
    <figure className="card admin-chart" data-testid={testId} data-points={data[0].length}>
      <figcaption>{title}</figcaption>
      <div ref={box} />
    </figure>
  );
}
