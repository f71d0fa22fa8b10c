FROM debian:12
WORKDIR /src
RUN make
USER app
HEALTHCHECK CMD ["/app/health"]
