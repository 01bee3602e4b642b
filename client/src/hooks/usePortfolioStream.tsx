// usePortfolioStream: owns one PortfolioStream (WebSocket /ws/portfolio) for the component's
// lifetime — connects on mount, closes on unmount — and exposes its state to React.
// PortfolioStreamProvider shares one stream with the useRealtime* hooks below it.
import { createContext, useCallback, useContext, useEffect, useRef, useState, useSyncExternalStore, type ReactNode } from 'react';
import { useQueryClient } from '@tanstack/react-query';
import { api as defaultApi, UnauthorizedError, type Api } from '../lib/api';
import type { Channel, ServerMessage } from '../lib/schemas';
import {
  PortfolioStream,
  type ConnectionStatus,
  type GapInfo,
  type PortfolioStreamOptions,
  type StreamMode,
  type StreamState,
} from '../stream/PortfolioStream';

export type { ConnectionStatus, StreamMode, StreamState };

/** REST polling interval in fallback mode (REQ-8). */
export const POLL_INTERVAL_MS = 5_000;
/** Background REST reconciliation while the socket is live (REQ-9, REQ-10). */
export const RECONCILE_INTERVAL_MS = 60_000;

export interface PortfolioStreamApi {
  connectionStatus: ConnectionStatus;
  mode: StreamMode;
  /** ms since epoch of the last message, or null */
  lastEventAt: number | null;
  state: StreamState;
  /** listen to messages of some channels; returns the unsubscribe function */
  subscribe: (channels: readonly Channel[] | null, listener: (msg: ServerMessage) => void) => () => void;
  reconnectNow: () => void;
  stream: PortfolioStream;
}

export type UsePortfolioStreamOptions = Omit<PortfolioStreamOptions, 'onGap' | 'onSessionRevoked' | 'onInvalidMessage'> & {
  onGap?: (gap: GapInfo) => void;
  onSessionRevoked?: () => void;
  onInvalidMessage?: (raw: unknown, error: string) => void;
};

export function usePortfolioStream(options: UsePortfolioStreamOptions = {}): PortfolioStreamApi {
  const optsRef = useRef(options);
  optsRef.current = options;
  const [stream] = useState(
    () =>
      new PortfolioStream({
        ...options,
        onGap: (gap) => optsRef.current.onGap?.(gap),
        onSessionRevoked: () => optsRef.current.onSessionRevoked?.(),
        onInvalidMessage: (raw, err) => optsRef.current.onInvalidMessage?.(raw, err),
      }),
  );
  useEffect(() => {
    stream.start();
    return () => stream.stop();
  }, [stream]);
  const state = useSyncExternalStore(stream.onStateChange, stream.getState, stream.getState);
  const [subscribe] = useState(
    () => (channels: readonly Channel[] | null, listener: (msg: ServerMessage) => void) =>
      stream.subscribe(listener, channels ?? undefined),
  );
  const [reconnectNow] = useState(() => () => stream.reconnectNow());
  return {
    connectionStatus: state.status,
    mode: state.mode,
    lastEventAt: state.lastEventAt,
    state,
    subscribe,
    reconnectNow,
    stream,
  };
}

interface StreamContextValue extends PortfolioStreamApi {
  userId: string;
  api: Api;
  /** the symbol filter in force (null: every symbol) */
  symbols: readonly string[] | null;
  /** narrow the socket subscription and the REST calls to these symbols (null: all) */
  setSymbols: (symbols: readonly string[] | null) => void;
}

const StreamContext = createContext<StreamContextValue | null>(null);

export function usePortfolioStreamContext(): StreamContextValue {
  const ctx = useContext(StreamContext);
  if (!ctx) throw new Error('usePortfolioStreamContext must be used inside <PortfolioStreamProvider>');
  return ctx;
}

export interface PortfolioStreamProviderProps {
  userId: string;
  children: ReactNode;
  api?: Api;
  onSessionRevoked?: () => void;
  /** extra options for the stream (tests pass a fake socket and timers here) */
  streamOptions?: UsePortfolioStreamOptions;
}

export const dataKeys = (userId: string) =>
  [
    ['positions', userId],
    ['orders', userId],
    ['account', userId],
    ['trades', userId],
  ] as const;

export function PortfolioStreamProvider({ userId, children, api = defaultApi, onSessionRevoked, streamOptions }: PortfolioStreamProviderProps) {
  const queryClient = useQueryClient();
  const stream = usePortfolioStream({
    checkRealtime: () => api.health().then((h) => h.realtime),
    checkSession: () =>
      api.me().then(
        () => true,
        (err) => !(err instanceof UnauthorizedError),
      ),
    ...streamOptions,
    onGap: (gap) => {
      // Events were lost (or the server lost its history): refetch everything over REST now.
      for (const key of dataKeys(userId)) void queryClient.invalidateQueries({ queryKey: key });
      streamOptions?.onGap?.(gap);
    },
    onSessionRevoked: () => {
      streamOptions?.onSessionRevoked?.();
      onSessionRevoked?.();
    },
  });
  const [symbols, setSymbolsState] = useState<readonly string[] | null>(() => stream.stream.symbols);
  const setSymbols = useCallback(
    (next: readonly string[] | null) => {
      if (!stream.stream.setSymbols(next)) return;
      setSymbolsState(stream.stream.symbols);
      // The REST side narrows too: refetch the symbol-filtered data sets with the new filter.
      for (const key of dataKeys(userId)) if (key[0] !== 'account') void queryClient.invalidateQueries({ queryKey: key });
    },
    [stream.stream, queryClient, userId],
  );
  return <StreamContext.Provider value={{ ...stream, userId, api, symbols, setSymbols }}>{children}</StreamContext.Provider>;
}
