FROM debian:12
ADD app.conf /etc/app.conf
USER app
HEALTHCHECK CMD ["/app/health"]
