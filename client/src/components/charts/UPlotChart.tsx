// A uPlot line chart (https://github.com/leeoniya/uPlot: a small, fast time-series chart) sized to
// its container. uPlot draws on a canvas without animation, so prefers-reduced-motion has nothing
// to turn off; colours come from the theme's CSS variables and the chart is redrawn when the
// theme changes. Loaded only in the lazy chart chunk.
import { useEffect, useRef } from 'react';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';

export interface LineSeries {
  label: string;
  /** CSS variable holding the stroke colour, e.g. "--accent" */
  colorVar: string;
  values: (number | null)[];
}

export interface UPlotChartProps {
  /** unix seconds */
  times: number[];
  series: LineSeries[];
  height: number;
  /** axes, grid and hover legend (false for sparklines) */
  axes?: boolean;
  /** value formatter for the y axis and the legend */
  format?: (v: number) => string;
  /** changes when the theme does, to redraw with its colours */
  theme?: string;
}

function cssVar(el: Element, name: string, fallback: string): string {
  return getComputedStyle(el).getPropertyValue(name).trim() || fallback;
}

function canDraw(): boolean {
  try {
    return typeof document !== 'undefined' && !!document.createElement('canvas').getContext('2d');
  } catch {
    return false;
  }
}

export function UPlotChart({ times, series, height, axes = true, format, theme }: UPlotChartProps) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const shape = `${series.map((s) => s.label).join('|')}|${axes}|${height}|${theme ?? ''}`;

  useEffect(() => {
    const el = box.current;
    if (!el || !canDraw()) return;
    const text = cssVar(el, '--muted', '#64748b');
    const grid = cssVar(el, '--panel-border', '#334155');
    const fmt = format ?? ((v: number) => String(v));
    const opts: uPlot.Options = {
      width: Math.max(60, el.clientWidth || 300),
      height,
      legend: { show: axes },
      cursor: axes ? { points: { size: 6 } } : { show: false },
      scales: { x: { time: true } },
      axes: axes
        ? [
            { stroke: text, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid } },
            { stroke: text, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid }, size: 96, values: (_u, vals) => vals.map(fmt) },
          ]
        : [{ show: false }, { show: false }],
      series: [
        {},
        ...series.map((s) => ({
          label: s.label,
          stroke: cssVar(el, s.colorVar, '#38bdf8'),
          width: axes ? 2 : 1.5,
          points: { show: false },
          value: (_u: uPlot, v: number | null) => (v == null ? '—' : fmt(v)),
          spanGaps: true,
        })),
      ],
    };
    const u = new uPlot(opts, [times, ...series.map((s) => s.values)] as uPlot.AlignedData, el);
    plot.current = u;
    let observer: ResizeObserver | null = null;
    if (typeof ResizeObserver !== 'undefined') {
      observer = new ResizeObserver(() => u.setSize({ width: Math.max(60, el.clientWidth), height }));
      observer.observe(el);
    }
    return () => {
      observer?.disconnect();
      u.destroy();
      plot.current = null;
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps -- data is pushed by the effect below
  }, [shape]);

  useEffect(() => {
    plot.current?.setData([times, ...series.map((s) => s.values)] as uPlot.AlignedData);
  }, [times, series]);

  return <div ref={box} className={axes ? 'uplot-box' : 'uplot-spark'} />;
}
