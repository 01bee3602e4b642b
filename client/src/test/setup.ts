import { afterEach, vi } from 'vitest';
import { cleanup } from '@testing-library/react';
import { setReducedMotion } from './media';

afterEach(() => {
  cleanup();
  setReducedMotion(false);
  vi.useRealTimers();
});
