// Light and dark themes: follow prefers-color-scheme until the trader picks one with the toggle;
// the choice persists in localStorage ("folio-theme"). The resolved theme is set on
// <html data-theme="light|dark"> (styles.css holds both palettes).
import { useSyncExternalStore } from 'react';

export type ThemeChoice = 'system' | 'light' | 'dark';
export type Theme = 'light' | 'dark';
export const THEME_STORAGE_KEY = 'folio-theme';
const DARK_QUERY = '(prefers-color-scheme: dark)';
const LIGHT_QUERY = '(prefers-color-scheme: light)';

function readChoice(): ThemeChoice {
  try {
    const v = window.localStorage.getItem(THEME_STORAGE_KEY);
    return v === 'light' || v === 'dark' ? v : 'system';
  } catch {
    return 'system';
  }
}

/** The system's scheme: light only when the browser says so (dark is the app's default). */
export function systemTheme(): Theme {
  if (typeof window === 'undefined' || typeof window.matchMedia !== 'function') return 'dark';
  if (window.matchMedia(DARK_QUERY).matches) return 'dark';
  return window.matchMedia(LIGHT_QUERY).matches ? 'light' : 'dark';
}

export function resolveTheme(choice: ThemeChoice): Theme {
  return choice === 'system' ? systemTheme() : choice;
}

interface ThemeState {
  choice: ThemeChoice;
  resolved: Theme;
}

let state: ThemeState = { choice: 'system', resolved: 'dark' };
const listeners = new Set<() => void>();

function apply(next: ThemeState): void {
  state = next;
  if (typeof document !== 'undefined') {
    document.documentElement.dataset.theme = next.resolved;
    document.documentElement.style.colorScheme = next.resolved;
  }
  listeners.forEach((l) => l());
}

/** Read the stored choice and apply it; call once before the first render (main.tsx). */
export function initTheme(): void {
  const choice = readChoice();
  apply({ choice, resolved: resolveTheme(choice) });
  if (typeof window !== 'undefined' && typeof window.matchMedia === 'function') {
    const mql = window.matchMedia(DARK_QUERY);
    mql.addEventListener?.('change', () => {
      if (state.choice === 'system') apply({ choice: 'system', resolved: systemTheme() });
    });
  }
}

/** Pick a theme ("system" follows the browser again) and remember it. */
export function setThemeChoice(choice: ThemeChoice): void {
  try {
    if (choice === 'system') window.localStorage.removeItem(THEME_STORAGE_KEY);
    else window.localStorage.setItem(THEME_STORAGE_KEY, choice);
  } catch {
    /* private mode: the choice lasts for this page only */
  }
  apply({ choice, resolved: resolveTheme(choice) });
}

function subscribe(l: () => void): () => void {
  listeners.add(l);
  return () => listeners.delete(l);
}
const getState = () => state;

export function useTheme(): ThemeState & { setChoice: (c: ThemeChoice) => void } {
  const s = useSyncExternalStore(subscribe, getState, getState);
  return { ...s, setChoice: setThemeChoice };
}
