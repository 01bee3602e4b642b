import { useTheme } from '../hooks/useTheme';

/** Switches light/dark; the choice persists. Shows the theme it switches to. */
export function ThemeToggle() {
  const { resolved, setChoice } = useTheme();
  const next = resolved === 'dark' ? 'light' : 'dark';
  return (
    <button
      type="button"
      className="theme-toggle"
      data-testid="theme-toggle"
      aria-pressed={resolved === 'dark'}
      aria-label="Dark theme"
      title={`Switch to the ${next} theme`}
      onClick={() => setChoice(next)}
    >
      <span aria-hidden="true">{resolved === 'dark' ? '☾' : '☀'}</span>
    </button>
  );
}
