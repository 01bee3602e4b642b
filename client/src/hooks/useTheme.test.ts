import { afterEach, describe, expect, it, vi } from 'vitest';
import { initTheme, resolveTheme, setThemeChoice, THEME_STORAGE_KEY } from './useTheme';

function systemScheme(scheme: 'light' | 'dark') {
  vi.spyOn(window, 'matchMedia').mockImplementation(
    (query: string) =>
      ({
        matches: query.includes(`prefers-color-scheme: ${scheme}`),
        media: query,
        addEventListener: () => undefined,
        removeEventListener: () => undefined,
      }) as unknown as MediaQueryList,
  );
}

afterEach(() => {
  window.localStorage.clear();
});

describe('theme', () => {
  it('follows prefers-color-scheme until a choice is made, and the choice persists', () => {
    systemScheme('light');
    initTheme();
    expect(document.documentElement.dataset.theme).toBe('light');
    setThemeChoice('dark');
    expect(window.localStorage.getItem(THEME_STORAGE_KEY)).toBe('dark');
    expect(document.documentElement.dataset.theme).toBe('dark');
    initTheme(); // a reload
    expect(document.documentElement.dataset.theme).toBe('dark');
    setThemeChoice('system');
    expect(window.localStorage.getItem(THEME_STORAGE_KEY)).toBeNull();
    expect(document.documentElement.dataset.theme).toBe('light');
  });

  it('dark is the default when the browser states no preference', () => {
    systemScheme('dark');
    expect(resolveTheme('system')).toBe('dark');
    expect(resolveTheme('light')).toBe('light');
  });
});
