FROM debian:12
ARG VERSION=1.2
ENV APP_HOME=/app
RUN --mount=type=secret,id=npm npm ci
USER app
HEALTHCHECK CMD ["/app/health"]
