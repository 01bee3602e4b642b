import { beforeEach, describe, expect, it, vi } from 'vitest';
import { act, fireEvent, render, screen, waitFor } from '@testing-library/react';
import { App } from './App';
import { UnauthorizedError } from './lib/api';
import { SocketFactory } from './test/fakeSocket';
import { fakeApi } from './test/harness';
import { EPOCH, event, order, position, trade } from './test/fixtures';

let factory: SocketFactory;
const streamOptions = () => ({ url: 'ws://test/ws/portfolio', createSocket: factory.create, random: () => 0.5 });

beforeEach(() => {
  factory = new SocketFactory();
  vi.spyOn(console, 'warn').mockImplementation(() => undefined);
});

describe('App', () => {
  it('shows the login page on 401 from /api/me, then the dashboard after signing in', async () => {
    const api = fakeApi({
      me: vi.fn(async () => {
        throw new UnauthorizedError();
      }),
      positions: vi.fn(async () => ({ userId: '1', seq: 3, epoch: EPOCH, positions: [position('AAPL')] })),
    });
    render(<App api={api} streamOptions={streamOptions()} />);
    await screen.findByRole('button', { name: 'Sign in' });
    fireEvent.change(screen.getByLabelText('Username'), { target: { value: 'alice' } });
    fireEvent.change(screen.getByLabelText('Password'), { target: { value: 'demo' } });
    fireEvent.click(screen.getByRole('button', { name: 'Sign in' }));
    await screen.findByTestId('positions-table');
    expect(api.login).toHaveBeenCalledWith('alice', 'demo');
    expect(screen.getByTestId('position-AAPL')).toBeTruthy();
    await waitFor(() => expect(factory.sockets).toHaveLength(1));
    act(() => factory.last.serverOpen());
    expect(screen.getByTestId('status-label').textContent).toBe('Live');

    // an order fill appears without reload, and is announced
    act(() => factory.last.serverSend(event('snapshot', 3, { positions: [position('AAPL')], orders: [], trades: [] })));
    act(() => factory.last.serverSend(event('order_update', 4, order('o1', { status: 'filled', filledQty: '5', filledAvgPrice: '187.32' }))));
    act(() => factory.last.serverSend(event('trade_executed', 5, trade('x1'))));
    expect(screen.getByTestId('recent-orders').textContent).toContain('Filled');
    expect(screen.getAllByTestId('execution')).toHaveLength(1);
    expect(screen.getByTestId('announcer').textContent).toMatch(/Bought 5 AAPL/);
  });

  it('shows and announces the paused banner on engine_down, and clears it on engine_ok', async () => {
    const api = fakeApi();
    render(<App api={api} streamOptions={streamOptions()} />);
    await waitFor(() => expect(factory.sockets).toHaveLength(1));
    act(() => factory.last.serverOpen());
    const note = (code: string, degraded: boolean) => ({
      type: 'notice',
      seq: 0,
      epoch: '',
      userId: '1',
      timestamp: '2026-11-25T20:00:00.000000Z',
      data: { code, message: 'server text', degraded },
    });
    expect(screen.queryByTestId('engine-paused')).toBeNull();
    act(() => factory.last.serverSend(note('engine_down', true)));
    const banner = screen.getByTestId('engine-paused');
    expect(banner.textContent).toBe("Live updates paused — reconnecting to the server's message bus");
    expect(banner.getAttribute('role')).toBe('status');
    expect(screen.getByTestId('announcer').textContent).toContain('Live updates paused');
    act(() => factory.last.serverSend(note('engine_ok', false)));
    expect(screen.queryByTestId('engine-paused')).toBeNull();
    expect(screen.getByTestId('announcer').textContent).toContain('Live updates resumed');
  });

  it('a 4001 close returns to the login page and does not reconnect', async () => {
    const api = fakeApi();
    render(<App api={api} streamOptions={streamOptions()} />);
    await waitFor(() => expect(factory.sockets).toHaveLength(1));
    act(() => factory.last.serverOpen());
    act(() => factory.last.serverClose(4001));
    await screen.findByRole('button', { name: 'Sign in' });
    expect(screen.getByText(/session ended/i)).toBeTruthy();
    expect(factory.sockets).toHaveLength(1);
  });

  it('shows "Using backup connection" when realtime is off', async () => {
    const api = fakeApi({ health: vi.fn(async () => ({ status: 'ok', realtime: false })) });
    render(<App api={api} streamOptions={streamOptions()} />);
    await screen.findByTestId('backup-banner');
    expect(screen.getByTestId('status-label').textContent).toBe('Using backup connection');
    expect(screen.getByTestId('status-dot').dataset.tone).toBe('yellow');
    expect(factory.sockets).toHaveLength(0);
  });
});
