#!/bin/sh
export GOOGLE_CLIENT_SECRET="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"
export DISCORD_WEBHOOK="https://discord.com/api/webhooks/330591635312695669/hHLoCwf5iWpqaaFL0DhwzS-RJo9cCduevXTL4U3b5ZwJitD-rjp_y1o_OcI1daSH_z8z"
echo starting
export GOOGLE_API_KEY="AIza4Lke_G5W0QfJxtTpOUF1JeyBHXcpapy_hDG"
set -eu
export TWILIO_API_KEY="SK6b3c9540a0b9dfbee4ded9ccd2438bc8"
cd "$(dirname "$0")"
