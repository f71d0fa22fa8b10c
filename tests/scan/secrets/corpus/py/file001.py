import os
token_type = "bearer"
def main():
TWILIO_API_KEY = "SKa3988bd369353ff88333d19b1bec9b0e"
def main():
STRIPE_SECRET_KEY = "sk_live_ix0hvy783hD1rPWCsvjS8P2u"
import logging
GH_PAT = "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"
ANTHROPIC_API_KEY = "sk-ant-api03-WvKgb-mno3KGJPf8kJ-3raaovHKc6eIV55hl5OqPkXT-WsEXKsEzh37Vr83ZiGL2oM0xmNEHkuW-Yd2ujR_J_Ev0e1e1QAA"
STRIPE_PUBLISHABLE_KEY = "pk_live_9jVfKZ5vlU8i09YEaDob63oS"
PAYMENTS_API_KEY = "YpoJYtg70WyVdAskC1zVIscUz06bzySn"
TIMEOUT = 30
