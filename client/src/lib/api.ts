// REST client for the server's JSON endpoints (docs/protocol.md, "REST"). Answers are validated
// with zod. A 401 raises UnauthorizedError, which the app turns into "show the login page".
import { z } from 'zod';
import {
  accountHistorySchema,
  accountResponseSchema,
  healthSchema,
  meSchema,
  ordersResponseSchema,
  positionsResponseSchema,
  tradesResponseSchema,
  type AccountData,
  type AccountHistory,
  type Health,
  type Me,
  type OrdersData,
  type PositionsData,
  type TradesData,
} from './schemas';

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

export class UnauthorizedError extends ApiError {
  constructor(code = 'unauthorized', message = 'Not signed in') {
    super(401, code, message);
    this.name = 'UnauthorizedError';
  }
}

export async function request<S extends z.ZodTypeAny>(
  path: string,
  schema: S,
  init: RequestInit = {},
): Promise<z.output<S>> {
  const res = await fetch(path, {
    credentials: 'same-origin',
    ...init,
    headers: { Accept: 'application/json', ...(init.body ? { 'Content-Type': 'application/json' } : {}), ...init.headers },
  });
  let body: unknown = null;
  const text = await res.text();
  if (text) {
    try {
      body = JSON.parse(text);
    } catch {
      body = null;
    }
  }
  if (!res.ok) {
    const err = (body as { error?: { code?: string; message?: string } } | null)?.error;
    const code = err?.code ?? `http_${res.status}`;
    const message = err?.message ?? `${init.method ?? 'GET'} ${path} failed with ${res.status}`;
    if (res.status === 401) throw new UnauthorizedError(code, message);
    throw new ApiError(res.status, code, message);
  }
  const parsed = schema.safeParse(body);
  if (!parsed.success) {
    throw new ApiError(res.status, 'invalid_response', `${path}: ${parsed.error.issues[0]?.message ?? 'invalid response'}`);
  }
  return parsed.data;
}

/** `?symbols=AAPL,MSFT` for a symbol filter (null: every symbol). */
export function symbolsQuery(symbols: readonly string[] | null | undefined): string {
  return symbols ? `?symbols=${encodeURIComponent(symbols.join(','))}` : '';
}

const anyObject = z.object({}).passthrough();

export const api = {
  me: (): Promise<Me> => request('/api/me', meSchema),
  login: (username: string, password: string): Promise<Me> =>
    request('/api/login', meSchema, { method: 'POST', body: JSON.stringify({ username, password }) }),
  logout: async (): Promise<void> => {
    await request('/api/logout', anyObject, { method: 'POST', body: '{}' });
  },
  health: (): Promise<Health> => request('/api/health', healthSchema),
  positions: (symbols?: readonly string[] | null): Promise<PositionsData> =>
    request(`/api/positions${symbolsQuery(symbols)}`, positionsResponseSchema),
  orders: (symbols?: readonly string[] | null): Promise<OrdersData> =>
    request(`/api/orders${symbolsQuery(symbols)}`, ordersResponseSchema),
  account: (): Promise<AccountData> => request('/api/account', accountResponseSchema),
  trades: (symbols?: readonly string[] | null): Promise<TradesData> =>
    request(`/api/trades${symbolsQuery(symbols)}`, tradesResponseSchema),
  /** the account's recorded equity and day P&L points (period "1D": the last 24 hours) */
  accountHistory: (period = '1D'): Promise<AccountHistory> =>
    request(`/api/account/history?period=${encodeURIComponent(period)}`, accountHistorySchema),
};

export type Api = typeof api;
