FROM debian:12
EXPOSE 80 443
USER app
HEALTHCHECK CMD ["/app/health"]
