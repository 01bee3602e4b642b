import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { PortfolioStream, type PortfolioStreamOptions } from './PortfolioStream';
import { SocketFactory } from '../test/fakeSocket';
import { EPOCH, event, position } from '../test/fixtures';

let factory: SocketFactory;
let streams: PortfolioStream[] = [];

function make(opts: Partial<PortfolioStreamOptions> = {}) {
  const s = new PortfolioStream({
    url: 'ws://test/ws/portfolio',
    createSocket: factory.create,
    random: () => 0.5, // no jitter: the nominal schedule
    ...opts,
  });
  streams.push(s);
  return s;
}

const flush = async () => {
  for (let i = 0; i < 5; i++) await Promise.resolve();
};

beforeEach(() => {
  vi.useFakeTimers();
  factory = new SocketFactory();
  vi.spyOn(console, 'warn').mockImplementation(() => undefined);
});
afterEach(() => {
  streams.forEach((s) => s.stop());
  streams = [];
});

describe('PortfolioStream connection', () => {
  it('connects on start, subscribes to every channel and closes on stop', () => {
    const s = make();
    s.start();
    expect(factory.sockets).toHaveLength(1);
    expect(s.getState().status).toBe('connecting');
    factory.last.serverOpen();
    expect(s.getState().status).toBe('connected');
    expect(factory.last.sent).toEqual([{ type: 'subscribe', channels: ['positions', 'orders', 'account', 'trades'] }]);
    const ws = factory.last;
    s.stop();
    expect(ws.closedByClient?.code).toBe(1000);
    expect(s.getState().status).toBe('disconnected');
    vi.advanceTimersByTime(120_000);
    expect(factory.sockets).toHaveLength(1);
  });

  it('reconnects with backoff 1, 2, 4, 8, 16, 30 … s, 10 attempts, then falls back to polling', () => {
    const s = make();
    s.start();
    factory.last.serverOpen();
    factory.last.serverClose(1006); // connection lost
    const delays: number[] = [];
    for (let attempt = 1; attempt <= 10; attempt++) {
      const st = s.getState();
      expect(st.mode).toBe('realtime');
      expect(st.attempt).toBe(attempt);
      const delay = st.nextRetryAt! - Date.now();
      delays.push(delay);
      const before = factory.sockets.length;
      vi.advanceTimersByTime(delay - 1);
      expect(factory.sockets).toHaveLength(before); // not a millisecond early
      vi.advanceTimersByTime(1);
      expect(factory.sockets).toHaveLength(before + 1);
      expect(s.getState().status).toBe('connecting');
      factory.last.serverClose(1006); // refused
    }
    expect(delays).toEqual([1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000, 30000, 30000]);
    // after the 10th failed attempt: REST polling, "Using backup connection"
    expect(s.getState().mode).toBe('polling');
    expect(s.getState().pollingReason).toBe('retries_exhausted');
    expect(factory.sockets).toHaveLength(11);
  });

  it('jitter changes the delays but keeps them within ±20 % and under 30 s', () => {
    const s = make({ random: () => 0.99 });
    s.start();
    factory.last.serverClose(1006);
    for (let attempt = 1; attempt <= 10; attempt++) {
      const delay = s.getState().nextRetryAt! - Date.now();
      const nominal = Math.min(30000, 1000 * 2 ** (attempt - 1));
      expect(delay).toBeGreaterThan(nominal * 0.8 - 1);
      expect(delay).toBeLessThanOrEqual(Math.min(30000, nominal * 1.2));
      vi.advanceTimersByTime(delay);
      factory.last.serverClose(1006);
    }
    expect(s.getState().mode).toBe('polling');
  });

  it('keeps probing the socket while polling and returns to it when it comes back', () => {
    const s = make({ maxAttempts: 2 });
    s.start();
    factory.last.serverClose(1006);
    vi.advanceTimersByTime(1000);
    factory.last.serverClose(1006);
    vi.advanceTimersByTime(2000);
    factory.last.serverClose(1006);
    expect(s.getState().mode).toBe('polling');
    const count = factory.sockets.length;
    vi.advanceTimersByTime(30_000);
    expect(factory.sockets).toHaveLength(count + 1); // a probe
    factory.last.serverClose(1006);
    expect(s.getState().mode).toBe('polling');
    vi.advanceTimersByTime(30_000);
    expect(factory.sockets).toHaveLength(count + 2);
    factory.last.serverOpen();
    expect(s.getState().mode).toBe('realtime');
    expect(s.getState().status).toBe('connected');
    expect(s.getState().attempt).toBe(0);
  });

  it('resets the attempt count after a successful reconnect', () => {
    const s = make();
    s.start();
    factory.last.serverOpen();
    factory.last.serverClose(1001);
    vi.advanceTimersByTime(1000);
    factory.last.serverClose(1006);
    expect(s.getState().attempt).toBe(2);
    vi.advanceTimersByTime(2000);
    factory.last.serverOpen();
    expect(s.getState().attempt).toBe(0);
    factory.last.serverClose(1011);
    expect(s.getState().nextRetryAt! - Date.now()).toBe(1000);
  });

  it('re-subscribes with lastSeq and epoch on reconnect', () => {
    const s = make();
    s.start();
    factory.last.serverOpen();
    factory.last.serverSend(event('snapshot', 40, { positions: [] }));
    factory.last.serverSend(event('position_update', 41, position('AAPL')));
    factory.last.serverClose(1001);
    vi.advanceTimersByTime(1000);
    factory.last.serverOpen();
    expect(factory.last.sent).toEqual([
      { type: 'subscribe', channels: ['positions', 'orders', 'account', 'trades'], lastSeq: 41, epoch: EPOCH },
    ]);
  });

  it('close code 4001 goes to login and never retries', () => {
    const onSessionRevoked = vi.fn();
    const s = make({ onSessionRevoked });
    s.start();
    factory.last.serverOpen();
    factory.last.serverClose(4001);
    expect(onSessionRevoked).toHaveBeenCalledTimes(1);
    expect(s.getState().sessionRevoked).toBe(true);
    vi.advanceTimersByTime(10 * 60_000);
    expect(factory.sockets).toHaveLength(1);
  });

  it('1008 (too many connections) does not retry at once', () => {
    const s = make();
    s.start();
    factory.last.serverOpen();
    factory.last.serverClose(1008);
    expect(s.getState().nextRetryAt! - Date.now()).toBe(30_000);
  });

  it('polls from the start when /api/health says realtime: false', async () => {
    const checkRealtime = vi.fn().mockResolvedValue(false);
    const s = make({ checkRealtime });
    s.start();
    await flush();
    expect(factory.sockets).toHaveLength(0);
    expect(s.getState().mode).toBe('polling');
    expect(s.getState().pollingReason).toBe('realtime_disabled');
    // the flag is re-checked now and then; once it is on, the socket is used
    checkRealtime.mockResolvedValue(true);
    vi.advanceTimersByTime(30_000);
    await flush();
    expect(factory.sockets).toHaveLength(1);
    factory.last.serverOpen();
    expect(s.getState().mode).toBe('realtime');
  });

  it('a refused socket with realtime off on the server switches to polling at once', async () => {
    const checkRealtime = vi.fn().mockResolvedValueOnce(true).mockResolvedValue(false);
    const s = make({ checkRealtime });
    s.start();
    await flush();
    factory.last.serverOpen();
    factory.last.serverClose(1001); // server restarts …
    vi.advanceTimersByTime(1000);
    factory.last.serverClose(1006); // … with the feature flag off: the upgrade is refused (404)
    await flush();
    expect(s.getState().mode).toBe('polling');
    expect(s.getState().pollingReason).toBe('realtime_disabled');
  });

  it('a refused socket whose session is gone goes to login', async () => {
    const onSessionRevoked = vi.fn();
    const s = make({ onSessionRevoked, checkSession: () => Promise.resolve(false) });
    s.start();
    factory.last.serverClose(1006);
    await flush();
    expect(onSessionRevoked).toHaveBeenCalled();
    vi.advanceTimersByTime(120_000);
    expect(factory.sockets).toHaveLength(1);
  });
});

describe('PortfolioStream messages', () => {
  function connected(opts: Partial<PortfolioStreamOptions> = {}) {
    const s = make(opts);
    s.start();
    factory.last.serverOpen();
    return s;
  }

  it('parses messages with zod, reports invalid ones and keeps going', () => {
    const onInvalidMessage = vi.fn();
    const s = connected({ onInvalidMessage });
    const seen: string[] = [];
    s.subscribe((m) => seen.push(m.type));
    factory.last.serverSend('not json{');
    factory.last.serverSend({ type: 'position_update', seq: 1, data: { symbol: 'AAPL' } });
    factory.last.serverSend({ type: 'mystery', seq: 1, data: {} });
    factory.last.serverSend(event('position_update', 1, position('AAPL', { quantity: '1e5' })));
    expect(onInvalidMessage).toHaveBeenCalledTimes(4);
    expect(s.getState().invalidMessages).toBe(4);
    expect(seen).toEqual([]);
    factory.last.serverSend(event('position_update', 1, position('AAPL')));
    expect(seen).toEqual(['position_update']);
    expect(s.getState().status).toBe('connected');
    expect(s.getState().lastEventAt).toBe(Date.now());
  });

  it('delivers events to listeners of their channel only', () => {
    const s = connected();
    const positions: string[] = [];
    const orders: string[] = [];
    s.subscribe((m) => positions.push(m.type), ['positions']);
    s.subscribe((m) => orders.push(m.type), ['orders']);
    factory.last.serverSend(event('snapshot', 1, { positions: [] }));
    factory.last.serverSend(event('position_update', 2, position('AAPL')));
    factory.last.serverSend(event('batch', 3, { positions: [position('MSFT')], orders: [], account: null }));
    expect(positions).toEqual(['snapshot', 'position_update', 'batch']);
    expect(orders).toEqual(['snapshot', 'batch']);
  });

  it('a jump in seq reports a gap (refetch); consecutive numbers and duplicates do not', () => {
    const onGap = vi.fn();
    const s = connected({ onGap });
    const seen: number[] = [];
    s.subscribe((m) => seen.push(m.seq ?? -1));
    factory.last.serverSend(event('snapshot', 10, { positions: [] }));
    factory.last.serverSend(event('position_update', 11, position('AAPL')));
    factory.last.serverSend(event('status', 12, { code: 'broker_ok', message: '', stale: false }));
    expect(onGap).not.toHaveBeenCalled();
    factory.last.serverSend(event('position_update', 11, position('AAPL'))); // replayed duplicate
    expect(seen).toEqual([10, 11, 12]);
    factory.last.serverSend(event('position_update', 15, position('AAPL')));
    expect(onGap).toHaveBeenCalledWith({ reason: 'seq_gap', expected: 13, received: 15 });
    expect(s.getState().lastSeq).toBe(15);
    expect(seen).toEqual([10, 11, 12, 15]);
  });

  it('a new epoch means the server lost its history: refetch', () => {
    const onGap = vi.fn();
    const s = connected({ onGap });
    factory.last.serverSend(event('snapshot', 10, { positions: [] }));
    factory.last.serverSend(event('position_update', 3, position('AAPL'), 'ep-2'));
    expect(onGap).toHaveBeenCalledWith({ reason: 'epoch_changed', expected: null, received: 3 });
    expect(s.getState().epoch).toBe('ep-2');
    expect(s.getState().lastSeq).toBe(3);
  });

  it('keeps recent events to re-apply on top of a REST answer', () => {
    const s = connected();
    factory.last.serverSend(event('snapshot', 10, { positions: [] }));
    factory.last.serverSend(event('position_update', 11, position('AAPL')));
    factory.last.serverSend(event('position_update', 12, position('MSFT')));
    expect(s.eventsAfter(11, EPOCH).map((e) => e.seq)).toEqual([12]);
    expect(s.eventsAfter(12, EPOCH)).toEqual([]);
    expect(s.eventsAfter(0, 'other-epoch')).toEqual([]);
  });
});

describe('PortfolioStream symbol filter', () => {
  it('narrows the subscription at once, keeps it on reconnect, and clears it with null', () => {
    const onGap = vi.fn();
    const s = make({ onGap });
    s.start();
    factory.last.serverOpen();
    factory.last.serverSend(event('snapshot', 10, { positions: [] }));
    expect(s.setSymbols([' msft', 'aapl', 'AAPL'])).toBe(true);
    expect(s.symbols).toEqual(['AAPL', 'MSFT']);
    expect(factory.last.sent.at(-1)).toEqual({
      type: 'subscribe',
      channels: ['positions', 'orders', 'account', 'trades'],
      symbols: ['AAPL', 'MSFT'],
    });
    expect(s.setSymbols(['MSFT', 'AAPL'])).toBe(false); // same filter: nothing sent
    expect(factory.last.sent).toHaveLength(2);
    // filtered: events for other symbols are skipped, so a jump in seq is not a loss
    expect(s.gapDetection).toBe(false);
    factory.last.serverSend(event('position_update', 14, position('AAPL')));
    expect(onGap).not.toHaveBeenCalled();
    // a reconnect subscribes with the filter (and resumes from lastSeq)
    factory.last.serverClose(1006);
    vi.advanceTimersByTime(1000);
    factory.last.serverOpen();
    expect(factory.last.sent[0]).toMatchObject({ symbols: ['AAPL', 'MSFT'], lastSeq: 14, epoch: EPOCH });
    expect(s.setSymbols(null)).toBe(true);
    expect(factory.last.sent.at(-1)).toEqual({ type: 'subscribe', channels: ['positions', 'orders', 'account', 'trades'], symbols: null });
    expect(s.gapDetection).toBe(true);
  });
});

const notice = (code: 'engine_down' | 'engine_ok') => ({
  type: 'notice',
  seq: 0,
  epoch: '',
  userId: '1',
  timestamp: '2026-11-25T20:00:00.000000Z',
  data: { code, message: 'from the server', degraded: code === 'engine_down' },
});

describe('PortfolioStream engine notices', () => {
  it('engine_down pauses, engine_ok resumes and resubscribes from lastSeq; neither moves the stream', () => {
    const seen: string[] = [];
    const s = make();
    s.subscribe((m) => seen.push(m.type));
    s.start();
    factory.last.serverOpen();
    factory.last.serverSend(event('subscribed', 10, { channels: ['positions'], symbols: null, recovered: false }));
    factory.last.serverSend(event('snapshot', 10, { positions: [] }));
    factory.last.serverSend(event('position_update', 11, position('AAPL')));
    expect(s.getState().engineDegraded).toBe(false);

    factory.last.serverSend(notice('engine_down'));
    expect(s.getState()).toMatchObject({ engineDegraded: true, lastSeq: 11, epoch: EPOCH, invalidMessages: 0 });
    expect(s.eventsAfter(0, EPOCH).map((e) => e.seq)).toEqual([11]); // not a stream event
    factory.last.serverSend(notice('engine_down')); // idempotent
    expect(factory.last.sent).toHaveLength(1);

    factory.last.serverSend(notice('engine_ok'));
    expect(s.getState()).toMatchObject({ engineDegraded: false, lastSeq: 11, epoch: EPOCH });
    expect(factory.last.sent).toHaveLength(2);
    expect(factory.last.sent[1]).toEqual({
      type: 'subscribe',
      channels: ['positions', 'orders', 'account', 'trades'],
      lastSeq: 11,
      epoch: EPOCH,
    });
    // the replay's events are applied; an engine_ok without a pause asks for nothing
    factory.last.serverSend(event('position_update', 12, position('MSFT')));
    expect(s.getState().lastSeq).toBe(12);
    factory.last.serverSend(notice('engine_ok'));
    expect(factory.last.sent).toHaveLength(2);
    expect(seen.filter((t) => t === 'notice')).toHaveLength(4); // listeners see every notice
  });

  it('a new socket clears the pause once it subscribes without being told engine_down', () => {
    const s = make();
    s.start();
    factory.last.serverOpen();
    factory.last.serverSend(notice('engine_down'));
    factory.last.serverClose(1011); // the subscribe failed: the server's bus is down
    expect(s.getState().engineDegraded).toBe(true); // still paused while reconnecting
    vi.advanceTimersByTime(1000);
    factory.last.serverOpen();
    // told again at once by a process whose bus is still down: stays paused
    factory.last.serverSend(notice('engine_down'));
    factory.last.serverSend(event('subscribed', 3, { channels: ['positions'], symbols: null, recovered: false }));
    expect(s.getState().engineDegraded).toBe(true);
    factory.last.serverClose(1006);
    vi.advanceTimersByTime(2000);
    factory.last.serverOpen();
    // another process, bus up: a plain subscribed clears it
    factory.last.serverSend(event('subscribed', 3, { channels: ['positions'], symbols: null, recovered: false }));
    expect(s.getState().engineDegraded).toBe(false);
  });

  it('a notice with a malformed body is rejected like any invalid message', () => {
    const s = make();
    s.start();
    factory.last.serverOpen();
    factory.last.serverSend({ ...notice('engine_down'), data: { code: 'engine_down' } }); // no degraded
    expect(s.getState()).toMatchObject({ engineDegraded: false, invalidMessages: 1 });
  });
});
