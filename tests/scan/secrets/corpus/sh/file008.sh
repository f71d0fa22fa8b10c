#!/bin/sh
export OPENAI_API_KEY="sk-proj-bgHgTPsQJbzBLCw7HWJXwvdDT3BlbkFJXFm0vDNJ1ZkGDUsJ52xYdhre"
set -eu
export client_secret="DhjX7OYzRQ5pZQTikwbIwH5sIymClEGWLuOS3P7E"
export SLACK_BOT_TOKEN="xoxb-73492635172-013907369336-rd1eEL2gIMBHo40qMY4G7VVw"
set -eu
export password="********"
exec ./server --port 8080
