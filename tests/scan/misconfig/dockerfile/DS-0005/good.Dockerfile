FROM debian:12
ADD rootfs.tar.gz /
COPY app.conf /etc/app.conf
USER app
HEALTHCHECK CMD ["/app/health"]
