FROM debian:12
RUN curl -fsSLo install.sh https://get.example.com/install.sh && sha256sum -c install.sh.sha256 && sh install.sh
USER app
HEALTHCHECK CMD ["/app/health"]
