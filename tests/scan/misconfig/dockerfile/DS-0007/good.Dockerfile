FROM debian:12 AS build
ENTRYPOINT ["/a"]
FROM debian:12
ENTRYPOINT ["/b"]
USER app
HEALTHCHECK CMD ["/app/health"]
