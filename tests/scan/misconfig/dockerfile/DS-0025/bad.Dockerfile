FROM alpine:3.20
RUN apk add curl
USER app
HEALTHCHECK CMD ["/app/health"]
