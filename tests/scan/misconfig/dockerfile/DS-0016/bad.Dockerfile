FROM debian:12
CMD ["a"]
CMD ["b"]
USER app
HEALTHCHECK CMD ["/app/health"]
