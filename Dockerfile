# syntax=docker/dockerfile:1
# The shipped service: built once, run with plain node from dist/ as a non-root user, without dev dependencies.

FROM node:24-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY . .
RUN npm run build

FROM node:24-bookworm-slim
# PostgreSQL's server binaries: the embedded state store (when no DATABASE_URL is given) and the local provider's
# clusters run on them. The AWS provider and an external store need none, but the image stays one for both.
RUN apt-get update \
 && apt-get install -y --no-install-recommends postgresql-15 postgresql-client-15 \
 && rm -rf /var/lib/apt/lists/*
# Mutual TLS by default: mount the certificates and the policy here (see deploy/policy.yaml). The health check
# presents the server's own certificate, which must therefore also allow client authentication.
ENV NODE_ENV=production PGSHIFT_DATA_DIR=/var/lib/pgshift \
    PGSHIFT_TLS_CERT=/etc/pgshift/tls/server.crt PGSHIFT_TLS_KEY=/etc/pgshift/tls/server.key \
    PGSHIFT_TLS_CLIENT_CA=/etc/pgshift/tls/ca.crt PGSHIFT_POLICY=/etc/pgshift/policy.yaml \
    PGSHIFT_API=https://127.0.0.1:50051 PGSHIFT_CA=/etc/pgshift/tls/ca.crt \
    PGSHIFT_CLIENT_CERT=/etc/pgshift/tls/server.crt PGSHIFT_CLIENT_KEY=/etc/pgshift/tls/server.key
WORKDIR /app
# The bundle carries all the JavaScript and reads no package's files at run time (Envoy's descriptors were parsed at
# build; PostgreSQL's binaries are the system's): no node_modules. What it carries is listed, with the licences, in
# THIRD-PARTY-NOTICES.md and sbom.cdx.json.
COPY --from=build /src/dist/pgshift.mjs /src/dist/pgshift.mjs.map ./dist/
COPY --from=build /src/dist/chunks ./dist/chunks
COPY --from=build /src/dist/web ./dist/web
COPY --from=build /src/dist/envoy-descriptors.json /src/dist/THIRD-PARTY-NOTICES.md /src/dist/sbom.cdx.json ./dist/
RUN mkdir -p /var/lib/pgshift && chown node:node /var/lib/pgshift
USER node
EXPOSE 50051 18000 9464
HEALTHCHECK --interval=10s --timeout=6s --start-period=30s --retries=3 CMD ["node", "dist/pgshift.mjs", "health"]
ENTRYPOINT ["node", "--enable-source-maps", "dist/pgshift.mjs"]
CMD ["serve", "--host", "0.0.0.0"]
