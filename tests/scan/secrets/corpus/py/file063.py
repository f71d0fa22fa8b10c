import os
def main():
GITHUB_TOKEN = "ghp_MITMdxjthblV47Af1pVRcnG0JZS8JAdKJqwl"
import logging
GOOGLE_API_KEY = "AIzalJRPevDecmCLKYrzq7r9UvvHkULHUNycbz9"
secret = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
log = logging.getLogger(__name__)
key_file = "/etc/ssl/private/cppcmllw.pem"
    return 0
client_secret = "71I27-bYk6IA40fmESeTSF3OznBEBxXujj7SXpjf"
TIMEOUT = 30
DOCKERHUB_TOKEN = "dckr_pat_NwNBMOYPKAGEQL9j3Y7kZ5GnBfc"
    return 0
api_key = "load_key(config_path)"
TIMEOUT = 30
