FROM debian:12
ADD https://example.com/tool.tar.gz /opt/
USER app
HEALTHCHECK CMD ["/app/health"]
