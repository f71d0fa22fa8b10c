FROM debian:12
EXPOSE 22/tcp 80
USER app
HEALTHCHECK CMD ["/app/health"]
