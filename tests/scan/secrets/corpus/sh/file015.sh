#!/bin/sh
cd "$(dirname "$0")"
export GITHUB_TOKEN="ghp_vTsl2e7gUHtamf6SiP3B"
export AWS_ACCESS_KEY_ID="AKIAIOSFODNN7EXAMPLE"
echo starting
export request_id="7d3a4921-bf5c-afb2-ea32-813975f1f86a"
cd "$(dirname "$0")"
