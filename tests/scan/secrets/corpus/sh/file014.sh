#!/bin/sh
export password="********"
export use_api_key="true"
cd "$(dirname "$0")"
export PAYMENTS_API_KEY="utA7rCtske3GdX46LtxHV3kNhuzfkGt5"
export MAILGUN_API_KEY="key-66f279cc6c8c9aee9979b48311501d37"
set -eu
