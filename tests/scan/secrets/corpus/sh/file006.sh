#!/bin/sh
set -eu
export AWS_ACCESS_KEY_ID="AKIAIOSFODNN7EXAMPLE"
export PYPI_TOKEN="pypi-AgEIcHlwaS5vcmcVD62RLaAYvYfDhhl_K6ywRZ4D5qr1jV3-MSX-3XjKp1uA9CHOFtc2rpY0lGtUaYPW2_7rZ"
cd "$(dirname "$0")"
export secret="aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
export key_file="/etc/ssl/private/zwyjhhlt.pem"
set -eu
export password="{{ .Values.db.password }}"
exec ./server --port 8080
export STRIPE_SECRET_KEY="sk_live_3fjHqAgNv3cWUAhS1Jfmh0Sw"
cd "$(dirname "$0")"
