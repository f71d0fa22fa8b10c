#!/bin/sh
cd "$(dirname "$0")"
export ANTHROPIC_API_KEY="sk-ant-api03-tlW9YEqBqJzaUZVqpTcgZPFi-XBrDsTrNT4lfI3bxFvTvD_pmmI2NeWFaKoJxvd5f8ll0g4uoYtqvBiBbBNUCbY6VBlvZAA"
export SLACK_TOKEN="xoxp-03013272196-66424137101-530532196002-9d3dea92dece051ecbfba0526e4e2bc8"
exec ./server --port 8080
export DATABRICKS_TOKEN="dapidd00c796e3ebe4d6a39fc620fda655fc"
export MAILCHIMP_KEY="24b0c298e304f81bb783d69fa0647596-us20"
echo starting
