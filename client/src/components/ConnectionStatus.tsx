// Header indicator: a green/yellow/red dot *and* a text label (colour is never the only signal).
import { useEffect, useRef } from 'react';
import type { StreamState } from '../stream/PortfolioStream';
import { useNow } from '../hooks/useNow';
import { useAnnounce } from './Announcer';

export type Tone = 'green' | 'yellow' | 'red';

export interface StatusView {
  tone: Tone;
  label: string;
  detail: string | null;
}

export function describeStatus(state: StreamState, now: number): StatusView {
  const retryIn = state.nextRetryAt ? Math.max(0, Math.ceil((state.nextRetryAt - now) / 1000)) : null;
  if (state.sessionRevoked) return { tone: 'red', label: 'Signed out', detail: null };
  if (state.mode === 'polling') {
    const why = state.pollingReason === 'realtime_disabled' ? 'live updates are switched off' : 'live connection unavailable';
    return { tone: 'yellow', label: 'Using backup connection', detail: `${why}; refreshing every 5 s` };
  }
  switch (state.status) {
    case 'connected':
      return { tone: 'green', label: 'Live', detail: null };
    case 'connecting':
      return {
        tone: 'yellow',
        label: state.attempt > 0 ? 'Reconnecting…' : 'Connecting…',
        detail: state.attempt > 0 ? `attempt ${state.attempt} of ${state.maxAttempts}` : null,
      };
    case 'error':
    case 'disconnected':
    default:
      return {
        tone: 'red',
        label: state.status === 'error' ? 'Connection failed' : 'Disconnected',
        detail:
          retryIn !== null
            ? `retrying in ${retryIn}s, attempt ${state.attempt} of ${state.maxAttempts}`
            : null,
      };
  }
}

export function ConnectionStatus({ state, onRetry }: { state: StreamState; onRetry?: () => void }) {
  const now = useNow(1000);
  const view = describeStatus(state, now);
  const announce = useAnnounce();
  const previous = useRef<string | null>(null);
  useEffect(() => {
    // Announce changes of the label, not the ticking countdown.
    if (previous.current !== null && previous.current !== view.label) announce(`Connection: ${view.label}`);
    previous.current = view.label;
  }, [view.label, announce]);
  const canRetry = onRetry && view.tone !== 'green' && state.status !== 'connecting' && !state.sessionRevoked;
  return (
    <div className="connection-status" data-testid="connection-status" data-tone={view.tone} data-status={state.status} data-mode={state.mode}>
      <span className={`status-dot status-dot--${view.tone}`} data-testid="status-dot" data-tone={view.tone} aria-hidden="true" />
      <span className="status-label" data-testid="status-label">
        {view.label}
      </span>
      {view.detail && <span className="status-detail">({view.detail})</span>}
      {canRetry && (
        <button type="button" className="link-button" onClick={onRetry}>
          Retry now
        </button>
      )}
    </div>
  );
}
