// The connection manager behind usePortfolioStream: one WebSocket to /ws/portfolio, reconnect
// with backoff, fallback to REST polling, seq/epoch tracking and gap detection. It knows nothing
// about React; the hook wraps it (and tests drive it with a fake WebSocket and fake timers).
import {
  CHANNELS,
  isStreamEvent,
  serverMessageSchema,
  type Channel,
  type ServerMessage,
  type StreamEvent,
} from '../lib/schemas';
import { backoffDelay, MAX_ATTEMPTS, BASE_DELAY_MS, MAX_DELAY_MS } from './backoff';

export type ConnectionStatus = 'connected' | 'connecting' | 'disconnected' | 'error';
export type StreamMode = 'realtime' | 'polling';
export type PollingReason = 'retries_exhausted' | 'realtime_disabled';

export interface StreamState {
  /** state of the WebSocket itself */
  status: ConnectionStatus;
  /** 'polling' once the socket gave up (REQ-8) or the server has realtime disabled */
  mode: StreamMode;
  pollingReason: PollingReason | null;
  /** reconnect attempts since the socket was last open (0 while connected) */
  attempt: number;
  maxAttempts: number;
  /** when the next connection attempt is due (ms since epoch), if one is scheduled */
  nextRetryAt: number | null;
  /** when the last message arrived (ms since epoch) */
  lastEventAt: number | null;
  lastSeq: number | null;
  epoch: string | null;
  invalidMessages: number;
  lastInvalid: string | null;
  lastCloseCode: number | null;
  /** set after a 4001 close: the session is gone, nothing is retried */
  sessionRevoked: boolean;
  /**
   * The server said (`notice` engine_down) that it cannot reach its message bus: the socket is
   * open but no live update arrives. Cleared by `engine_ok`, or by a `subscribed` on a new
   * socket that was not told engine_down first (the server tells a subscribe at once).
   */
  engineDegraded: boolean;
}

export interface GapInfo {
  reason: 'seq_gap' | 'epoch_changed';
  expected: number | null;
  received: number;
}

export type MessageListener = (msg: ServerMessage) => void;

export interface WebSocketLike {
  readonly readyState: number;
  onopen: ((ev: Event) => unknown) | null;
  onclose: ((ev: CloseEvent) => unknown) | null;
  onerror: ((ev: Event) => unknown) | null;
  onmessage: ((ev: MessageEvent) => unknown) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}
export type WebSocketFactory = (url: string) => WebSocketLike;

export interface PortfolioStreamOptions {
  url?: string;
  createSocket?: WebSocketFactory;
  channels?: readonly Channel[];
  /** symbol filter sent with `subscribe` (null or absent: every symbol) */
  symbols?: readonly string[] | null;
  maxAttempts?: number;
  baseDelayMs?: number;
  maxDelayMs?: number;
  /** while polling, how often to try the socket again (jittered like the backoff) */
  probeIntervalMs?: number;
  random?: () => number;
  now?: () => number;
  /** /api/health: resolves to the `realtime` flag, or null when unknown */
  checkRealtime?: () => Promise<boolean | null>;
  /** /api/me: resolves false when the session is gone (401) */
  checkSession?: () => Promise<boolean>;
  onSessionRevoked?: () => void;
  onGap?: (gap: GapInfo) => void;
  onInvalidMessage?: (raw: unknown, error: string) => void;
  /** how many recent stream events to keep for reconciling REST answers */
  historySize?: number;
}

const OPEN = 1;
export const CLOSE_SESSION_REVOKED = 4001;
export const CLOSE_POLICY_VIOLATION = 1008;

export function defaultSocketUrl(): string {
  const loc = window.location;
  return `${loc.protocol === 'https:' ? 'wss:' : 'ws:'}//${loc.host}/ws/portfolio`;
}

export class PortfolioStream {
  private readonly opts: Required<
    Pick<
      PortfolioStreamOptions,
      'maxAttempts' | 'baseDelayMs' | 'maxDelayMs' | 'probeIntervalMs' | 'random' | 'now' | 'historySize'
    >
  > &
    PortfolioStreamOptions;
  private ws: WebSocketLike | null = null;
  private opened = false;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private started = false;
  private stopped = false;
  private readonly channels: Set<Channel>;
  private symbolFilter: string[] | null;
  private readonly listeners = new Set<{ fn: MessageListener; channels: Set<Channel> | null }>();
  private readonly stateListeners = new Set<() => void>();
  private history: StreamEvent[] = [];
  private lastSnapshot: { seq: number; epoch: string | null } | null = null;
  /** whether this socket has said anything about the engine yet (a notice, or a clean subscribed) */
  private engineKnown = false;
  private state: StreamState;

  constructor(options: PortfolioStreamOptions = {}) {
    this.opts = {
      maxAttempts: MAX_ATTEMPTS,
      baseDelayMs: BASE_DELAY_MS,
      maxDelayMs: MAX_DELAY_MS,
      probeIntervalMs: MAX_DELAY_MS,
      random: Math.random,
      now: Date.now,
      historySize: 500,
      ...options,
    };
    this.channels = new Set(options.channels ?? CHANNELS);
    this.symbolFilter = normaliseSymbols(options.symbols);
    this.state = {
      status: 'disconnected',
      mode: 'realtime',
      pollingReason: null,
      attempt: 0,
      maxAttempts: this.opts.maxAttempts,
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
  }

  // --- public API ---

  getState = (): StreamState => this.state;

  onStateChange = (fn: () => void): (() => void) => {
    this.stateListeners.add(fn);
    return () => this.stateListeners.delete(fn);
  };

  /**
   * Listen to server messages. `channels` restricts delivery to stream events of those channels
   * (snapshot, subscribed, status and error messages always reach every listener). Channels not
   * yet subscribed on the server are subscribed.
   */
  subscribe = (fn: MessageListener, channels?: readonly Channel[]): (() => void) => {
    const entry = { fn, channels: channels ? new Set(channels) : null };
    this.listeners.add(entry);
    const missing = (channels ?? []).filter((c) => !this.channels.has(c));
    if (missing.length) {
      missing.forEach((c) => this.channels.add(c));
      if (this.ws && this.opened) this.send({ type: 'subscribe', channels: missing });
    }
    return () => {
      this.listeners.delete(entry);
    };
  };

  /** The symbol filter in force (upper-cased, sorted), or null for every symbol. */
  get symbols(): readonly string[] | null {
    return this.symbolFilter;
  }

  /**
   * Narrow (or widen, with null) what the server sends: positions, orders and trades of these
   * symbols only (protocol.md, `subscribe.symbols`; the account is never filtered). When the
   * socket is open a `subscribe` with the new filter is sent at once; the server answers with a
   * snapshot of the filtered state. Returns false when the filter did not change.
   */
  setSymbols(symbols: readonly string[] | null): boolean {
    const next = normaliseSymbols(symbols);
    if (sameSymbols(next, this.symbolFilter)) return false;
    this.symbolFilter = next;
    if (this.ws && this.opened) this.send({ type: 'subscribe', channels: [...this.channels], symbols: next });
    return true;
  }

  start(): void {
    if (this.started) return;
    this.started = true;
    this.stopped = false;
    const check = this.opts.checkRealtime;
    if (!check) {
      this.connect();
      return;
    }
    this.setState({ status: 'connecting' });
    check().then(
      (realtime) => {
        if (this.stopped) return;
        if (realtime === false) this.enterPolling('realtime_disabled');
        else this.connect();
      },
      () => {
        if (!this.stopped) this.connect();
      },
    );
  }

  stop(): void {
    this.stopped = true;
    this.started = false;
    this.clearTimer();
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      this.detach(ws);
      try {
        ws.close(1000, 'client closed');
      } catch {
        /* already closed */
      }
    }
    this.setState({ status: 'disconnected', nextRetryAt: null });
  }

  /** Try the socket right now (e.g. a "retry" button), resetting the attempt count. */
  reconnectNow(): void {
    if (this.stopped || this.state.sessionRevoked || (this.ws && this.opened)) return;
    this.clearTimer();
    this.setState({ attempt: 0 });
    this.connect();
  }

  send(msg: object): boolean {
    if (!this.ws || this.ws.readyState !== OPEN) return false;
    this.ws.send(JSON.stringify(msg));
    return true;
  }

  /** Stream events seen after `seq` in `epoch`, oldest first (to re-apply on top of a REST answer). */
  eventsAfter(seq: number, epoch: string | null): StreamEvent[] {
    return this.history.filter((e) => e.seq > seq && (epoch == null || e.epoch == null || e.epoch === epoch));
  }

  /**
   * Whether a REST answer taken as of `seq` is older than a snapshot the stream already
   * delivered: the snapshot (plus the events after it) is then the newer complete state.
   */
  supersededBySnapshot(seq: number, epoch: string | null): boolean {
    const snap = this.lastSnapshot;
    return !!snap && snap.epoch === epoch && seq < snap.seq;
  }

  /** Whether every event reaches this connection, so that a jump in seq means a lost event. */
  get gapDetection(): boolean {
    return this.symbolFilter === null && CHANNELS.every((c) => this.channels.has(c));
  }

  // --- internals ---

  private setState(patch: Partial<StreamState>): void {
    const next = { ...this.state, ...patch };
    const changed = (Object.keys(patch) as (keyof StreamState)[]).some((k) => next[k] !== this.state[k]);
    if (!changed) return;
    this.state = next;
    this.stateListeners.forEach((fn) => fn());
  }

  private clearTimer(): void {
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
  }

  private schedule(delay: number, fn: () => void): void {
    this.clearTimer();
    this.setState({ nextRetryAt: this.opts.now() + delay });
    this.timer = setTimeout(() => {
      this.timer = null;
      this.setState({ nextRetryAt: null });
      fn();
    }, delay);
  }

  private detach(ws: WebSocketLike): void {
    ws.onopen = null;
    ws.onclose = null;
    ws.onerror = null;
    ws.onmessage = null;
  }

  private connect(): void {
    if (this.stopped) return;
    this.clearTimer();
    if (this.ws) {
      this.detach(this.ws);
      try {
        this.ws.close();
      } catch {
        /* ignore */
      }
    }
    this.opened = false;
    this.setState({ status: 'connecting', nextRetryAt: null });
    let ws: WebSocketLike;
    try {
      ws = (this.opts.createSocket ?? ((url: string) => new WebSocket(url)))(this.opts.url ?? defaultSocketUrl());
    } catch {
      this.ws = null;
      this.handleClose(1006);
      return;
    }
    this.ws = ws;
    ws.onopen = () => this.handleOpen();
    ws.onmessage = (ev) => this.handleMessage(ev.data);
    ws.onerror = () => {
      if (!this.opened) this.setState({ status: 'error' });
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.detach(ws);
      this.ws = null;
      this.handleClose(ev.code);
    };
  }

  private handleOpen(): void {
    this.opened = true;
    this.engineKnown = false;
    this.setState({
      status: 'connected',
      mode: 'realtime',
      pollingReason: null,
      attempt: 0,
      nextRetryAt: null,
      lastCloseCode: null,
    });
    this.resubscribe();
  }

  /** Subscribe to everything wanted, resuming where we left off (a replay of what we missed, or a snapshot). */
  private resubscribe(): void {
    const msg: Record<string, unknown> = { type: 'subscribe', channels: [...this.channels] };
    if (this.symbolFilter !== null) msg.symbols = this.symbolFilter;
    if (this.state.lastSeq !== null && this.state.epoch) {
      msg.lastSeq = this.state.lastSeq;
      msg.epoch = this.state.epoch;
    }
    this.send(msg);
  }

  /** A `notice` about the server's message bus: pause/resume, and catch up after a pause. */
  private handleNotice(degraded: boolean): void {
    const wasDegraded = this.state.engineDegraded;
    this.engineKnown = true;
    this.setState({ engineDegraded: degraded });
    // Back after a pause: replay by lastSeq whatever the server's catch-up may not have brought.
    if (wasDegraded && !degraded) this.resubscribe();
  }

  private handleClose(code: number): void {
    const wasOpen = this.opened;
    this.opened = false;
    if (this.stopped) return;
    this.setState({ lastCloseCode: code });

    if (code === CLOSE_SESSION_REVOKED) {
      this.stopped = true;
      this.setState({ status: 'disconnected', sessionRevoked: true, nextRetryAt: null });
      this.opts.onSessionRevoked?.();
      return;
    }

    if (this.state.mode === 'polling') {
      // A probe failed: stay on the backup connection and try again later.
      this.setState({ status: 'disconnected' });
      this.scheduleProbe();
      return;
    }

    const attempt = this.state.attempt + 1;
    if (attempt > this.opts.maxAttempts) {
      this.enterPolling('retries_exhausted');
      return;
    }
    this.setState({ status: wasOpen ? 'disconnected' : 'error', attempt });
    let delay = backoffDelay(attempt, this.opts.random, this.opts.baseDelayMs, this.opts.maxDelayMs);
    // "Maximum connections exceeded": do not hammer the server.
    if (code === CLOSE_POLICY_VIOLATION) delay = Math.max(delay, this.opts.maxDelayMs);
    this.schedule(delay, () => this.connect());

    // A refused upgrade looks the same to a browser whatever the reason (401, 403, 404), so ask
    // the REST side: feature flag off → poll now (REQ-8); session gone → login page.
    if (!wasOpen) this.diagnose();
  }

  private diagnose(): void {
    const { checkRealtime, checkSession } = this.opts;
    checkSession?.().then(
      (ok) => {
        if (!ok && !this.stopped) {
          this.stop();
          this.setState({ sessionRevoked: true });
          this.opts.onSessionRevoked?.();
        }
      },
      () => undefined,
    );
    checkRealtime?.().then(
      (realtime) => {
        if (realtime === false && !this.stopped && this.state.mode !== 'polling' && !this.opened) {
          this.enterPolling('realtime_disabled');
        }
      },
      () => undefined,
    );
  }

  private enterPolling(reason: PollingReason): void {
    this.setState({ mode: 'polling', pollingReason: reason, status: 'disconnected' });
    this.scheduleProbe();
  }

  /** While polling, try the socket every ~30 s (after checking the flag when it was off). */
  private scheduleProbe(): void {
    const jittered = backoffDelay(1, this.opts.random, this.opts.probeIntervalMs, this.opts.probeIntervalMs);
    this.schedule(jittered, () => {
      if (this.state.pollingReason === 'realtime_disabled' && this.opts.checkRealtime) {
        this.opts.checkRealtime().then(
          (realtime) => {
            if (this.stopped) return;
            if (realtime === false) this.scheduleProbe();
            else this.connect();
          },
          () => {
            if (!this.stopped) this.scheduleProbe();
          },
        );
      } else {
        this.connect();
      }
    });
  }

  private handleMessage(raw: unknown): void {
    let json: unknown;
    try {
      json = JSON.parse(typeof raw === 'string' ? raw : String(raw));
    } catch {
      this.reportInvalid(raw, 'not JSON');
      return;
    }
    const parsed = serverMessageSchema.safeParse(json);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      this.reportInvalid(json, issue ? `${issue.path.join('.') || '(message)'}: ${issue.message}` : 'invalid message');
      return;
    }
    const msg = parsed.data;
    const patch: Partial<StreamState> = { lastEventAt: this.opts.now() };
    const knownEpoch = this.state.epoch;
    const epochChanged = !!msg.epoch && !!knownEpoch && msg.epoch !== knownEpoch;
    if (msg.epoch) patch.epoch = msg.epoch;

    if (msg.type === 'notice') {
      // Not a stream event and no stream position (seq 0, epoch ""): nothing to track but the flag.
      this.setState({ lastEventAt: patch.lastEventAt });
      this.handleNotice(msg.data.degraded);
      this.dispatch(msg);
      return;
    }
    if (msg.type === 'subscribed' && !this.engineKnown) {
      // The server tells a subscribe at once when its bus is down; a plain answer means it is up.
      this.engineKnown = true;
      patch.engineDegraded = false;
    }

    if (msg.type === 'snapshot') {
      patch.lastSeq = msg.seq;
      this.lastSnapshot = { seq: msg.seq, epoch: msg.epoch ?? knownEpoch };
    } else if (isStreamEvent(msg)) {
      const last = epochChanged ? null : this.state.lastSeq;
      if (last !== null && msg.seq <= last) {
        // Already seen (a replay overlapping what we had): drop it.
        this.setState({ lastEventAt: patch.lastEventAt });
        return;
      }
      patch.lastSeq = msg.seq;
      this.history.push(msg);
      if (this.history.length > this.opts.historySize) this.history.splice(0, this.history.length - this.opts.historySize);
      if (epochChanged) {
        this.history = [msg];
        this.setState(patch);
        this.opts.onGap?.({ reason: 'epoch_changed', expected: null, received: msg.seq });
      } else if (last !== null && msg.seq > last + 1 && this.gapDetection) {
        this.setState(patch);
        this.opts.onGap?.({ reason: 'seq_gap', expected: last + 1, received: msg.seq });
      }
    } else if (epochChanged) {
      // subscribed/pong/error from a server that lost its history: our lastSeq means nothing now.
      patch.lastSeq = null;
      this.history = [];
    }
    if (msg.type === 'snapshot' && epochChanged) this.history = [];
    this.setState(patch);
    this.dispatch(msg);
  }

  private dispatch(msg: ServerMessage): void {
    const channel = channelOf(msg);
    for (const l of [...this.listeners]) {
      if (channel && l.channels && !channel.some((c) => l.channels!.has(c))) continue;
      try {
        l.fn(msg);
      } catch (err) {
        console.error('portfolio stream listener failed', err);
      }
    }
  }

  private reportInvalid(raw: unknown, error: string): void {
    this.setState({ invalidMessages: this.state.invalidMessages + 1, lastInvalid: error });
    console.warn('portfolio stream: ignoring invalid message:', error);
    this.opts.onInvalidMessage?.(raw, error);
  }
}

/** Upper-cased, de-duplicated, sorted symbols; null stays null (no filter). */
export function normaliseSymbols(symbols: readonly string[] | null | undefined): string[] | null {
  if (symbols == null) return null;
  return [...new Set(symbols.map((s) => s.trim().toUpperCase()).filter(Boolean))].sort();
}

function sameSymbols(a: readonly string[] | null, b: readonly string[] | null): boolean {
  if (a === null || b === null) return a === b;
  return a.length === b.length && a.every((s, i) => s === b[i]);
}

/** The channels a message belongs to (null: delivered to every listener). */
export function channelOf(msg: ServerMessage): Channel[] | null {
  switch (msg.type) {
    case 'position_update':
      return ['positions'];
    case 'order_update':
      return ['orders'];
    case 'account_update':
      return ['account'];
    case 'trade_executed':
      return ['trades'];
    case 'batch':
      return ['positions', 'orders', 'account'];
    default:
      return null;
  }
}
