// A fake WebSocket the tests drive by hand: open it, push server messages, close it with a code.
import type { WebSocketLike } from '../stream/PortfolioStream';

export class FakeSocket implements WebSocketLike {
  static CONNECTING = 0;
  static OPEN = 1;
  static CLOSED = 3;
  readyState = FakeSocket.CONNECTING;
  onopen: ((ev: Event) => unknown) | null = null;
  onclose: ((ev: CloseEvent) => unknown) | null = null;
  onerror: ((ev: Event) => unknown) | null = null;
  onmessage: ((ev: MessageEvent) => unknown) | null = null;
  sent: unknown[] = [];
  closedByClient: { code?: number; reason?: string } | null = null;

  constructor(readonly url: string) {}

  send(data: string): void {
    if (this.readyState !== FakeSocket.OPEN) throw new Error('not open');
    this.sent.push(JSON.parse(data));
  }

  close(code?: number, reason?: string): void {
    this.closedByClient = { code, reason };
    this.readyState = FakeSocket.CLOSED;
  }

  // --- driven by tests ---
  serverOpen(): void {
    this.readyState = FakeSocket.OPEN;
    this.onopen?.(new Event('open'));
  }

  serverSend(msg: unknown): void {
    this.onmessage?.({ data: typeof msg === 'string' ? msg : JSON.stringify(msg) } as MessageEvent);
  }

  /** The connection drops (or is refused, when it was never opened). */
  serverClose(code = 1006): void {
    const wasOpen = this.readyState === FakeSocket.OPEN;
    this.readyState = FakeSocket.CLOSED;
    if (!wasOpen) this.onerror?.(new Event('error'));
    this.onclose?.({ code, reason: '', wasClean: code !== 1006 } as CloseEvent);
  }
}

export class SocketFactory {
  sockets: FakeSocket[] = [];
  create = (url: string): FakeSocket => {
    const s = new FakeSocket(url);
    this.sockets.push(s);
    return s;
  };
  get last(): FakeSocket {
    const s = this.sockets[this.sockets.length - 1];
    if (!s) throw new Error('no socket created');
    return s;
  }
}
