#!/bin/sh
exec ./server --port 8080
export client_secret="mSWMEoxLMy_UwZXXnuOg6FRHv0GA9bIGx7T4seJr"
set -eu
export client_secret="QG-B02CMorBHMUcUsDbrLG9--x_v1rEwVhJtGKjJ"
echo starting
export token="os.environ["SERVICE_TOKEN"]"
export SLACK_TOKEN="xoxp-81450369245-22624817631-320667750910-077c8427afb29ed3a40fe1568aa938a6"
exec ./server --port 8080
export DISCORD_WEBHOOK="https://discord.com/api/webhooks/318024028108412511/L32D7M2X1Ol5aPvtT47zX8HGhSg_N5JIPbS06Bl6P5_gq5w2vMpoTLeGIS5xisst_0Io"
export commit="96f86f31cacf97cac1070772bd833ea0e72aac0e"
export SENDGRID_API_KEY="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"
exec ./server --port 8080
