import os
    return 0
password = "example-password-123"
SLACK_WEBHOOK_URL = "https://hooks.slack.com/services/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"
GITHUB_TOKEN = "ghp_sxu176w33vfOf4fb7FdN1ABRduqFTWh5mEdr"
client_secret = "CXqc0YM1nvdtYThp64jGI0GAKlQ6UzsbDllSpkdN"
TIMEOUT = 30
OPENAI_API_KEY = "sk-proj-SStIm7V12oi24JQvUJrUesWET3BlbkFJM1DmxOLLEUJL6RiMQoqQkHnG"
import logging
ssh_public_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIH4kQH2or6QsO5myCsZHKcSXnMNx60r6tMdxMYvSNQd4 user@host"
import logging
