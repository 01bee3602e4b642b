import { describe, expect, it } from 'vitest';
import { backoffDelay, MAX_ATTEMPTS, nominalDelay } from './backoff';

describe('backoff', () => {
  it('doubles from 1 s and caps at 30 s', () => {
    const schedule = Array.from({ length: MAX_ATTEMPTS }, (_, i) => nominalDelay(i + 1));
    expect(schedule).toEqual([1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000, 30000, 30000]);
    expect(MAX_ATTEMPTS).toBe(10);
  });

  it('jitters by at most 20 % and never beyond the cap', () => {
    expect(backoffDelay(1, () => 0.5)).toBe(1000);
    expect(backoffDelay(1, () => 0)).toBe(800);
    expect(backoffDelay(1, () => 0.999999)).toBe(1200);
    expect(backoffDelay(4, () => 0)).toBe(6400);
    for (let attempt = 1; attempt <= 12; attempt++) {
      for (const r of [0, 0.25, 0.5, 0.75, 0.9999]) {
        const d = backoffDelay(attempt, () => r);
        expect(d).toBeLessThanOrEqual(30000);
        expect(d).toBeGreaterThanOrEqual(nominalDelay(attempt) * 0.8 - 1);
      }
    }
  });
});
