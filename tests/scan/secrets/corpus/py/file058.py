import os
def main():
SHOPIFY_ACCESS_TOKEN = "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"
description = "wxsf kki xcnnckwld ukoj mdikmz fwrlr"
import logging
DATABRICKS_TOKEN = "dapibd571b10c075a9406f274fdbf8f7ffda"
def main():
API_KEY = "${API_KEY}"
def main():
STRIPE_PUBLISHABLE_KEY = "pk_live_43lO1fAj5Fj1rX76udxA95jn"
log = logging.getLogger(__name__)
api_key = "load_key(config_path)"
    return 0
