# The service image: API, workers and the built dashboard; the role is the command.
FROM node:20-bookworm-slim
ENV NODE_ENV=production NPM_CONFIG_UPDATE_NOTIFIER=false
WORKDIR /app
COPY package.json package-lock.json ./
COPY core/package.json core/
COPY clickhouse/package.json clickhouse/
COPY workers/package.json workers/
COPY api/package.json api/
COPY web/package.json web/
COPY server/package.json server/
# dev dependencies too: esbuild bundles the service (npm run build, server/dist) and vite builds the
# dashboard; the ops and migrate commands run their TypeScript through tsx
RUN npm install --include=dev --no-audit --no-fund
COPY . .
RUN npm run build && mkdir -p /data && chown -R node:node /data
USER node
ENV DATA_DIR=/data PORT=3000
EXPOSE 3000
HEALTHCHECK --interval=10s --timeout=3s --retries=5 \
  CMD node -e "fetch('http://127.0.0.1:'+(process.env.PORT||3000)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
CMD ["npm", "run", "start:api"]
