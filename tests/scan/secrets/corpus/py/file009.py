import os
password = "changeme"
version = "1.23.53"
log = logging.getLogger(__name__)
SESSION_JWT = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiAiNjQ2NjQxNDU2MyIsICJuYW1lIjogImdhbGppd2tnIiwgImlhdCI6IDE2NjAwODc2Mjh9.tqQOfk8G7Jvmz-9FXevQkInJc73e4kJs3ClwU7991w0"
import logging
GITHUB_APP_TOKEN = "ghs_dL9y9vu566WBTZDTlYCCRh4XWrs44sFdwkUo"
import logging
