FROM debian:12
RUN sudo make install
USER app
HEALTHCHECK CMD ["/app/health"]
