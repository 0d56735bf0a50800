import { defineConfig } from 'vite'
import solid from 'vite-plugin-solid'

export default defineConfig({
  plugins: [solid()],
  build: { outDir: 'dist', emptyOutDir: true, chunkSizeWarningLimit: 1200 },
  server: {
    proxy: {
      '/v1': 'http://localhost:3000',
      '/demo-login': 'http://localhost:3000',
      '/session': 'http://localhost:3000',
    },
  },
})
