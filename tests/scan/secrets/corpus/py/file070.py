import os
    return 0
GITLAB_TOKEN = "glpat-PFa4bcLihplJXq3KbsCm"
password = "********"
GOOGLE_API_KEY = "AIza9jdX3FEY6mKM_tc0os4FiNjY2gh2aFsr8Di"
log = logging.getLogger(__name__)
ssh_public_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIcW4xHi9CuKQo6m7DnxVvOvg0fkhv7sXIoOomCfRwPk9 user@host"
digest = "sha256:8270d9ace952224278afe7f4afc3a35a56cc1b7e961a239fe5c7d25a7d50580b"
def main():
