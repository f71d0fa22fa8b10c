FROM debian:12
ADD --checksum=sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb https://example.com/tool.tar.gz /opt/
USER app
HEALTHCHECK CMD ["/app/health"]
