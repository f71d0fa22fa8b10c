FROM debian:12
USER app
