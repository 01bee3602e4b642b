/// <reference types="vitest" />
import { defineConfig } from 'vitest/config';
import react from '@vitejs/plugin-react';

// The built SPA goes to ../static, which Tornado serves at / (index.html) and /assets/*.
// Output file names are content hashes, so the same sources always build the same files.
// `npm run dev` proxies the API and the socket to a running server (FOLIO_SERVER, default :8888).
const server = process.env.FOLIO_SERVER ?? 'http://127.0.0.1:8888';

export default defineConfig({
  plugins: [react()],
  base: '/',
  build: {
    outDir: '../static',
    emptyOutDir: true,
    sourcemap: false,
    assetsDir: 'assets',
  },
  server: {
    port: 5173,
    // The server only accepts its own Origin on the socket and on POSTs: present that one.
    proxy: {
      '/api': { target: server, headers: { origin: server } },
      '/ws': { target: server.replace(/^http/, 'ws'), ws: true, headers: { origin: server } },
    },
  },
  test: {
    environment: 'jsdom',
    setupFiles: ['./src/test/setup.ts'],
    include: ['src/**/*.test.{ts,tsx}'],
    restoreMocks: true,
  },
});
