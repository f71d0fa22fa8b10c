FROM debian:12
USER app
HEALTHCHECK CMD curl -f http://localhost/ || exit 1
