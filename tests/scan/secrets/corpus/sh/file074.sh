#!/bin/sh
set -eu
export token="os.environ["SERVICE_TOKEN"]"
echo starting
export GITHUB_APP_TOKEN="ghs_kLsdDU7iG10vqLjM80LdNcWP8gKZdtag7rNg"
export SENDGRID_API_KEY="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"
cd "$(dirname "$0")"
export ANTHROPIC_API_KEY="sk-ant-api03-Hc5vqNiAIQVJ184ZamYngJPBdOiTGzCaLUV8N70B5e_0cm0ajBsxlZ79iPT1uCubZBBxccyFR3uwm93hKxO7_EY4GB8wVAA"
export AWS_SECRET_ACCESS_KEY="/9uPxDXGaYj9UJJNK8Hujqq/U+r3R4DV1OHF+CRv"
export api_key="<your-api-key-here>"
exec ./server --port 8080
