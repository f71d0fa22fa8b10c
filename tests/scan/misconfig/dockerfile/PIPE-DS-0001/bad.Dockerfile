FROM debian:12
RUN curl -fsSL https://get.example.com/install.sh | sh
USER app
HEALTHCHECK CMD ["/app/health"]
