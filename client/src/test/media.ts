// A controllable window.matchMedia for jsdom (which has none).
type Listener = (ev: { matches: boolean }) => void;
let reduced = false;
const listeners = new Set<Listener>();

export function setReducedMotion(value: boolean): void {
  reduced = value;
  listeners.forEach((l) => l({ matches: value }));
}

Object.defineProperty(window, 'matchMedia', {
  writable: true,
  configurable: true,
  value: (query: string) => ({
    get matches() {
      return query.includes('prefers-reduced-motion') ? reduced : false;
    },
    media: query,
    onchange: null,
    addEventListener: (_: string, l: Listener) => listeners.add(l),
    removeEventListener: (_: string, l: Listener) => listeners.delete(l),
    addListener: (l: Listener) => listeners.add(l),
    removeListener: (l: Listener) => listeners.delete(l),
    dispatchEvent: () => false,
  }),
});
