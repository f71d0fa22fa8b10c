FROM debian:12
CMD ["b"]
USER app
HEALTHCHECK CMD ["/app/health"]
