import os
SLACK_WEBHOOK_URL = "https://hooks.slack.com/services/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"
TIMEOUT = 30
db_password = "J2VoQa!iOZMLL4"
def main():
STRIPE_RESTRICTED_KEY = "rk_live_bkySNYxU1BEftO7g3aVa4u9J"
import logging
token_type = "bearer"
def main():
