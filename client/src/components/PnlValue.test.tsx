import { beforeEach, describe, expect, it, vi } from 'vitest';
import { act, render, screen } from '@testing-library/react';
import { setReducedMotion } from '../test/media';

const animateSpy = vi.fn();
vi.mock('framer-motion', async (importOriginal) => {
  const actual = await importOriginal<typeof import('framer-motion')>();
  const { useRef } = await import('react');
  return {
    ...actual,
    useAnimate: () => {
      const scope = useRef<HTMLElement | null>(null);
      return [scope, animateSpy];
    },
  };
});

import { FLASH_MS, flashKeyframes, PnlValue } from './PnlValue';

beforeEach(() => {
  animateSpy.mockClear();
  vi.useFakeTimers();
});

function renderPnl(value: string) {
  return render(
    <PnlValue value={value} testId="pnl">
      {value}
    </PnlValue>,
  );
}

describe('P&L flash (REQ-12) and reduced motion (REQ-13)', () => {
  it('keyframes: colour plus scale 1 → 1.05 → 1; reduced motion: colour only', () => {
    const full = flashKeyframes('up', false);
    expect(full.scale).toEqual([1, 1.05, 1]);
    expect(full.backgroundColor?.[0]).toMatch(/22, 163, 74/); // green
    expect(flashKeyframes('down', false).backgroundColor?.[0]).toMatch(/220, 38, 38/); // red
    const reduced = flashKeyframes('up', true);
    expect(reduced).not.toHaveProperty('scale');
    expect(reduced.backgroundColor).toEqual(full.backgroundColor);
  });

  it('flashes green and scales for 500 ms when P&L rises', () => {
    const { rerender } = renderPnl('10.00');
    expect(animateSpy).not.toHaveBeenCalled();
    rerender(
      <PnlValue value="10.50" testId="pnl">
        10.50
      </PnlValue>,
    );
    const el = screen.getByTestId('pnl');
    expect(el.dataset.flash).toBe('up');
    expect(el.dataset.motion).toBe('full');
    expect(el.className).toContain('flash-up');
    expect(animateSpy).toHaveBeenCalledTimes(1);
    const [, keyframes, options] = animateSpy.mock.calls[0]!;
    expect(keyframes.scale).toEqual([1, 1.05, 1]);
    expect(options.duration).toBe(FLASH_MS / 1000);
    act(() => vi.advanceTimersByTime(FLASH_MS));
    expect(el.dataset.flash).toBeUndefined();
  });

  it('flashes red when P&L falls, and shows a sign and arrow, not colour alone', () => {
    const { rerender } = renderPnl('10.00');
    rerender(
      <PnlValue value="-2.00" testId="pnl">
        -$2.00
      </PnlValue>,
    );
    const el = screen.getByTestId('pnl');
    expect(el.dataset.flash).toBe('down');
    expect(el.className).toContain('loss');
    expect(el.textContent).toContain('▼');
    expect(el.textContent).toContain('-');
  });

  it('with prefers-reduced-motion only the colour changes', () => {
    setReducedMotion(true);
    const { rerender } = renderPnl('10.00');
    rerender(
      <PnlValue value="11.00" testId="pnl">
        11.00
      </PnlValue>,
    );
    const el = screen.getByTestId('pnl');
    expect(el.dataset.motion).toBe('reduced');
    expect(el.dataset.flash).toBe('up');
    expect(animateSpy).toHaveBeenCalledTimes(1);
    const [, keyframes] = animateSpy.mock.calls[0]!;
    expect(keyframes).not.toHaveProperty('scale');
    expect(keyframes).toHaveProperty('backgroundColor');
  });

  it('does not flash when the value is unchanged (same decimal, other spelling)', () => {
    const { rerender } = renderPnl('10.5');
    rerender(
      <PnlValue value="10.50" testId="pnl">
        10.50
      </PnlValue>,
    );
    expect(screen.getByTestId('pnl').dataset.flash).toBeUndefined();
    expect(animateSpy).not.toHaveBeenCalled();
  });

  it('a fall of a positive P&L keeps its gain colour and tells screen readers "down since last update"', () => {
    const { rerender } = renderPnl('10.00');
    rerender(
      <PnlValue value="9.50" testId="pnl">
        9.50
      </PnlValue>,
    );
    const el = screen.getByTestId('pnl');
    expect(el.dataset.flash).toBe('down');
    expect(el.className).toContain('gain'); // the sign's colour, not the flash's
    expect(el.className).not.toContain('loss');
    expect(el.textContent).toContain('(down since last update)');
    act(() => vi.advanceTimersByTime(FLASH_MS));
    expect(el.textContent).not.toContain('since last update');
  });
});

