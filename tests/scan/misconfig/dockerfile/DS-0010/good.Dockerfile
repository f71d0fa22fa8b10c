FROM debian:12
RUN make install && echo sudo-less
USER app
HEALTHCHECK CMD ["/app/health"]
