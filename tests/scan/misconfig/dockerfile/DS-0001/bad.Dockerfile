FROM debian:latest
USER app
HEALTHCHECK CMD ["/app/health"]
