import { describe, expect, it } from 'vitest';
import { render, screen } from '@testing-library/react';
import { ConnectionStatus, describeStatus } from './ConnectionStatus';
import { AnnouncerProvider } from './Announcer';
import type { StreamState } from '../stream/PortfolioStream';

const base: StreamState = {
  status: 'connected',
  mode: 'realtime',
  pollingReason: null,
  attempt: 0,
  maxAttempts: 10,
  nextRetryAt: null,
  lastEventAt: null,
  lastSeq: null,
  epoch: null,
  invalidMessages: 0,
  lastInvalid: null,
  lastCloseCode: null,
  sessionRevoked: false,
  engineDegraded: false,
};

describe('ConnectionStatus', () => {
  it('maps states to a coloured dot and a text label', () => {
    expect(describeStatus(base, 0)).toMatchObject({ tone: 'green', label: 'Live' });
    expect(describeStatus({ ...base, status: 'connecting' }, 0)).toMatchObject({ tone: 'yellow', label: 'Connecting…' });
    expect(describeStatus({ ...base, status: 'connecting', attempt: 3 }, 0)).toMatchObject({
      tone: 'yellow',
      label: 'Reconnecting…',
      detail: 'attempt 3 of 10',
    });
    expect(describeStatus({ ...base, status: 'disconnected', attempt: 2, nextRetryAt: 4000 }, 0)).toMatchObject({
      tone: 'red',
      label: 'Disconnected',
      detail: 'retrying in 4s, attempt 2 of 10',
    });
    expect(describeStatus({ ...base, status: 'error' }, 0)).toMatchObject({ tone: 'red', label: 'Connection failed' });
    expect(describeStatus({ ...base, status: 'disconnected', mode: 'polling', pollingReason: 'retries_exhausted' }, 0)).toMatchObject({
      tone: 'yellow',
      label: 'Using backup connection',
    });
  });

  it('announces status changes in an aria-live region', () => {
    const { rerender } = render(
      <AnnouncerProvider>
        <ConnectionStatus state={base} />
      </AnnouncerProvider>,
    );
    expect(screen.getByTestId('status-label').textContent).toBe('Live');
    rerender(
      <AnnouncerProvider>
        <ConnectionStatus state={{ ...base, status: 'disconnected', mode: 'polling' }} />
      </AnnouncerProvider>,
    );
    const live = screen.getByTestId('announcer');
    expect(live.getAttribute('aria-live')).toBe('polite');
    expect(live.textContent).toContain('Using backup connection');
    expect(screen.getByTestId('status-dot').dataset.tone).toBe('yellow');
  });
});
