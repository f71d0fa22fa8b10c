#!/bin/sh
echo starting
export AWS_ACCESS_KEY_ID="AKIAXN7EPGWZQXQC2SBL"
export DATABASE_URL="postgres://user:password@localhost:5432/app"
echo starting
export db_password="rqx4IU&0EqHfM0"
export color="#924ce6"
exec ./server --port 8080
export use_api_key="true"
cd "$(dirname "$0")"
