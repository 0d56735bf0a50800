import solid from 'vite-plugin-solid'
import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'service',
          include: ['*/test/**/*.test.ts', 'test/**/*.test.ts'],
          globalSetup: ['test/support/build-server.ts'],
          // chDB binds one data directory per process, so every test file gets its own fork.
          pool: 'forks',
          fileParallelism: true,
          maxWorkers: 2,
          testTimeout: 60_000,
          hookTimeout: 120_000,
          sequence: { groupOrder: 0 },
        },
      },
      {
        plugins: [solid()],
        resolve: { conditions: ['development', 'browser'] },
        test: {
          name: 'web',
          root: './web',
          include: ['test/**/*.test.tsx'],
          environment: 'jsdom',
          sequence: { groupOrder: 1 },
        },
      },
    ],
  },
})
