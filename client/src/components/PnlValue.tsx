// A P&L figure that flashes when it changes (REQ-12): green when it rises, red when it falls,
// for 500 ms, scaling to 1.05 and back (framer-motion). With prefers-reduced-motion only the
// colour changes (REQ-13). The arrow/sign next to the number carries the meaning without colour.
// The flash is a background only: the text keeps its sign colour (a positive P&L that just fell
// stays green on a red flash), and screen readers hear "down since last update".
import { useEffect, useRef, useState, type ReactNode } from 'react';
import { motion, useAnimate } from 'framer-motion';
import { compareDecimal } from '../lib/decimal';
import { trendArrow, trendClass } from '../lib/format';
import { usePrefersReducedMotion } from '../hooks/useReducedMotion';

export const FLASH_MS = 500;
export type FlashDirection = 'up' | 'down';

const FLASH_COLOURS: Record<FlashDirection, [string, string]> = {
  // light enough that the sign-coloured text keeps 4.5:1 on it in both themes
  up: ['rgba(22, 163, 74, 0.2)', 'rgba(22, 163, 74, 0)'],
  down: ['rgba(220, 38, 38, 0.2)', 'rgba(220, 38, 38, 0)'],
};

/** The framer-motion keyframes of one flash; no transform at all with reduced motion. */
export function flashKeyframes(direction: FlashDirection, reducedMotion: boolean): Record<string, (string | number)[]> {
  const colour = { backgroundColor: FLASH_COLOURS[direction] };
  return reducedMotion ? colour : { ...colour, scale: [1, 1.05, 1] };
}

export interface PnlValueProps {
  /** decimal string whose movement decides the flash (e.g. unrealizedPnl) */
  value: string | null | undefined;
  children: ReactNode;
  className?: string;
  testId?: string;
  /** override for tests; defaults to the media query */
  reducedMotion?: boolean;
}

export function PnlValue({ value, children, className, testId, reducedMotion }: PnlValueProps) {
  const prefersReduced = usePrefersReducedMotion();
  const reduced = reducedMotion ?? prefersReduced;
  const [scope, animate] = useAnimate<HTMLSpanElement>();
  const previous = useRef(value);
  const [flash, setFlash] = useState<FlashDirection | null>(null);

  useEffect(() => {
    const prev = previous.current;
    previous.current = value;
    if (prev == null || value == null) return;
    const cmp = compareDecimal(value, prev);
    if (cmp === 0) return;
    const direction: FlashDirection = cmp > 0 ? 'up' : 'down';
    setFlash(direction);
    if (scope.current) {
      try {
        animate(scope.current, flashKeyframes(direction, reduced), { duration: FLASH_MS / 1000, ease: 'easeOut' });
      } catch {
        /* animation is decoration only */
      }
    }
    const t = setTimeout(() => setFlash(null), FLASH_MS);
    return () => clearTimeout(t);
  }, [value, reduced, animate, scope]);

  const arrow = trendArrow(value);
  return (
    <motion.span
      ref={scope}
      className={`pnl ${trendClass(value)}${flash ? ` flash-${flash}` : ''}${className ? ` ${className}` : ''}`}
      data-testid={testId}
      data-flash={flash ?? undefined}
      data-motion={reduced ? 'reduced' : 'full'}
    >
      {arrow && (
        <span className="arrow" aria-hidden="true">
          {arrow}{' '}
        </span>
      )}
      {children}
      {flash && <span className="sr-only">{flash === 'up' ? ' (up since last update)' : ' (down since last update)'}</span>}
    </motion.span>
  );
}
