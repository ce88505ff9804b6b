# syntax=docker/dockerfile:1
# Warden: multi-stage build on a pinned Node LTS (22, "Jod"); the image runs the compiled build
# with production dependencies only (no tsx, esbuild, pino-pretty, TypeScript) as a non-root user.
# Bump the version here deliberately (and ideally pin the digest: node:22.20.0-bookworm-slim@sha256:…).
ARG NODE_IMAGE=node:22.20.0-bookworm-slim

FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund

FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY scripts/build.mjs scripts/bundle-options.mjs ./scripts/
COPY src ./src
COPY commands ./commands
COPY sql ./sql
# dist/: compiled JavaScript (dist/src/main.js bundled by esbuild), dist/sql, dist/package.json ("type": "module").
RUN npm run build

FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production PORT=3000 LOG_FORMAT=json WARDEN_DATA_DIR=/data
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
RUN mkdir -p /data && chown node:node /data
# The embedded database (used when DATABASE_URL is unset; one replica only) lives here.
VOLUME ["/data"]
USER node
EXPOSE 3000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD node -e "fetch('http://127.0.0.1:'+(process.env.PORT||3000)+'/healthz').then(r=>process.exit(r.ok?0:1)).catch(()=>process.exit(1))"
# SIGTERM goes straight to node (no npm wrapper), which drains and exits.
CMD ["node", "dist/src/main.js"]
