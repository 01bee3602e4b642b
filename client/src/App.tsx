import { lazy, Suspense, useState } from 'react';
import { QueryCache, QueryClient, QueryClientProvider, useQuery, useQueryClient } from '@tanstack/react-query';
import { MotionConfig } from 'framer-motion';
import { api as defaultApi, UnauthorizedError, type Api } from './lib/api';
import type { Me } from './lib/schemas';
import { PortfolioStreamProvider, type UsePortfolioStreamOptions } from './hooks/usePortfolioStream';
import { AnnouncerProvider } from './components/Announcer';
import { Dashboard } from './components/Dashboard';
import { LoginPage } from './components/LoginPage';

export const meKey = ['me'] as const;

// The admin page is its own chunk: traders never download it (client/src/admin).
const AdminPage = lazy(() => import('./admin/AdminPage'));

export function createQueryClient(): QueryClient {
  const client: QueryClient = new QueryClient({
    queryCache: new QueryCache({
      onError: (error, query) => {
        // Any 401 means the session is gone: forget the user, which shows the login page.
        if (error instanceof UnauthorizedError && query.queryKey[0] !== 'me') client.setQueryData(meKey, null);
      },
    }),
    defaultOptions: {
      queries: {
        retry: (count, error) => !(error instanceof UnauthorizedError) && count < 2,
        refetchOnWindowFocus: false,
        staleTime: 1_000,
      },
    },
  });
  return client;
}

function Root({ api, streamOptions }: { api: Api; streamOptions?: UsePortfolioStreamOptions }) {
  const qc = useQueryClient();
  const [notice, setNotice] = useState<string | null>(null);
  const me = useQuery<Me | null>({
    queryKey: meKey,
    queryFn: async () => {
      try {
        return await api.me();
      } catch (err) {
        if (err instanceof UnauthorizedError) return null;
        throw err;
      }
    },
    staleTime: Infinity,
  });

  const signedOut = (message: string | null) => {
    setNotice(message);
    qc.removeQueries({ predicate: (q) => q.queryKey[0] !== 'me' });
    qc.setQueryData(meKey, null);
  };

  if (me.isPending) {
    return (
      <main className="login">
        <p className="muted" role="status">
          Loading…
        </p>
      </main>
    );
  }
  if (me.isError) {
    return (
      <main className="login">
        <p className="error" role="alert">
          Cannot reach the server: {me.error.message}
        </p>
        <button type="button" onClick={() => void me.refetch()}>
          Try again
        </button>
      </main>
    );
  }
  if (!me.data) {
    return (
      <LoginPage
        api={api}
        notice={notice}
        onLoggedIn={(user) => {
          setNotice(null);
          qc.setQueryData(meKey, user);
        }}
      />
    );
  }
  const user = me.data;
  if (user.isAdmin) {
    return (
      <Suspense
        fallback={
          <main className="login">
            <p className="muted" role="status">
              Loading the admin page…
            </p>
          </main>
        }
      >
        <AdminPage
          me={user}
          onLogout={() => {
            window.history.replaceState(null, '', '/');
            signedOut(null);
            api.logout().catch(() => undefined);
          }}
        />
      </Suspense>
    );
  }
  return (
    <PortfolioStreamProvider
      key={user.userId}
      userId={user.userId}
      api={api}
      streamOptions={streamOptions}
      onSessionRevoked={() => signedOut('Your session ended. Please sign in again.')}
    >
      <Dashboard
        me={user}
        onLogout={() => {
          // Unmount the stream first, so the server's 4001 close is not taken for an expiry.
          signedOut(null);
          api.logout().catch(() => undefined);
        }}
      />
    </PortfolioStreamProvider>
  );
}

export function App({
  api = defaultApi,
  queryClient,
  streamOptions,
}: {
  api?: Api;
  queryClient?: QueryClient;
  streamOptions?: UsePortfolioStreamOptions;
}) {
  const [client] = useState(() => queryClient ?? createQueryClient());
  return (
    <QueryClientProvider client={client}>
      <MotionConfig reducedMotion="user">
        <AnnouncerProvider>
          <Root api={api} streamOptions={streamOptions} />
        </AnnouncerProvider>
      </MotionConfig>
    </QueryClientProvider>
  );
}
