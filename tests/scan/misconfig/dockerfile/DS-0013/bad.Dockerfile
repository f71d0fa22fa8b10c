FROM debian:12
RUN cd /src && make
USER app
HEALTHCHECK CMD ["/app/health"]
