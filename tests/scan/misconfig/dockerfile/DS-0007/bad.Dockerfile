FROM debian:12
ENTRYPOINT ["/a"]
ENTRYPOINT ["/b"]
USER app
HEALTHCHECK CMD ["/app/health"]
