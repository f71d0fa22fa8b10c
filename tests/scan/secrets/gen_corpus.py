#!/usr/bin/env python3
"""Generates the seeded secret corpus: planted secrets and look-alike decoys in realistic files.

Deterministic (fixed seed): `python3 tests/scan/secrets/gen_corpus.py` rewrites `corpus/` and
`expected.json` identically. Every planted secret and every decoy sits on its own line;
`expected.json` lists them as {path, line, label: secret|decoy, kind}. A tool's finding counts
as a true positive when it names the file and line of a planted secret; findings anywhere else
(decoys, filler code) are false positives.

The values are random and belong to nobody; formats follow the providers' documentation.
"""

import base64
import json
import os
import random
import shutil
import string

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus")
rng = random.Random(20261126)

UP = string.ascii_uppercase
LO = string.ascii_lowercase
DIG = string.digits
ALNUM = UP + LO + DIG
HEX = "0123456789abcdef"
B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


def r(chars, n):
    return "".join(rng.choice(chars) for _ in range(n))


def uuid():
    return f"{r(HEX,8)}-{r(HEX,4)}-{r(HEX,4)}-{r(HEX,4)}-{r(HEX,12)}"


def b64(n):
    return base64.b64encode(bytes(rng.getrandbits(8) for _ in range(n))).decode()


def b64url(n):
    return base64.urlsafe_b64encode(bytes(rng.getrandbits(8) for _ in range(n))).decode().rstrip("=")


def jwt():
    head = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').decode().rstrip("=")
    body = base64.urlsafe_b64encode(
        json.dumps({"sub": r(DIG, 10), "name": r(LO, 8), "iat": rng.randint(1500000000, 1800000000)}).encode()
    ).decode().rstrip("=")
    return f"{head}.{body}.{b64url(32)}"


def pem(kind):
    body = "\n".join(b64(48) for _ in range(rng.randint(6, 12)))
    return f"-----BEGIN {kind}PRIVATE KEY-----\n{body}\n-----END {kind}PRIVATE KEY-----"


# (kind, variable name, value generator). Variable names are what people write.
SECRETS = [
    ("aws-access-key-id", "AWS_ACCESS_KEY_ID", lambda: "AKIA" + r("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16)),
    ("aws-secret-access-key", "AWS_SECRET_ACCESS_KEY", lambda: r(ALNUM + "/+", 40)),
    ("github-pat", "GITHUB_TOKEN", lambda: "ghp_" + r(ALNUM, 36)),
    ("github-fine-grained", "GH_PAT", lambda: "github_pat_" + r(ALNUM, 22) + "_" + r(ALNUM, 59)),
    ("github-oauth", "GITHUB_OAUTH_TOKEN", lambda: "gho_" + r(ALNUM, 36)),
    ("github-app", "GITHUB_APP_TOKEN", lambda: rng.choice(["ghs_", "ghu_"]) + r(ALNUM, 36)),
    ("gitlab-pat", "GITLAB_TOKEN", lambda: "glpat-" + r(ALNUM + "_-", 20)),
    ("slack-bot", "SLACK_BOT_TOKEN", lambda: f"xoxb-{r(DIG,11)}-{r(DIG,12)}-{r(ALNUM,24)}"),
    ("slack-user", "SLACK_TOKEN", lambda: f"xoxp-{r(DIG,11)}-{r(DIG,11)}-{r(DIG,12)}-{r(HEX,32)}"),
    ("slack-webhook", "SLACK_WEBHOOK_URL", lambda: f"https://hooks.slack.com/services/T{r(UP+DIG,8)}/B{r(UP+DIG,10)}/{r(ALNUM,24)}"),
    ("stripe-live", "STRIPE_SECRET_KEY", lambda: "sk_live_" + r(ALNUM, 24)),
    ("stripe-restricted", "STRIPE_RESTRICTED_KEY", lambda: "rk_live_" + r(ALNUM, 24)),
    ("stripe-webhook", "STRIPE_WEBHOOK_SECRET", lambda: "whsec_" + r(ALNUM, 32)),
    ("google-api-key", "GOOGLE_API_KEY", lambda: "AIza" + r(ALNUM + "_-", 35)),
    ("gcp-oauth-secret", "GOOGLE_CLIENT_SECRET", lambda: "GOCSPX-" + r(ALNUM + "_-", 28)),
    ("npm-token", "NPM_TOKEN", lambda: "npm_" + r(ALNUM, 36)),
    ("pypi-token", "PYPI_TOKEN", lambda: "pypi-AgEIcHlwaS5vcmc" + r(ALNUM + "_-", 70)),
    ("openai", "OPENAI_API_KEY", lambda: "sk-proj-" + r(ALNUM, 24) + "T3BlbkFJ" + r(ALNUM, 24)),
    ("anthropic", "ANTHROPIC_API_KEY", lambda: "sk-ant-api03-" + r(ALNUM + "_-", 93) + "AA"),
    ("huggingface", "HF_TOKEN", lambda: "hf_" + r(UP + LO, 34)),
    ("sendgrid", "SENDGRID_API_KEY", lambda: "SG." + r(ALNUM + "_-", 22) + "." + r(ALNUM + "_-", 43)),
    ("twilio", "TWILIO_API_KEY", lambda: "SK" + r(HEX, 32)),
    ("mailchimp", "MAILCHIMP_KEY", lambda: r(HEX, 32) + "-us" + str(rng.randint(1, 20))),
    ("mailgun", "MAILGUN_API_KEY", lambda: "key-" + r(HEX, 32)),
    ("heroku", "HEROKU_API_KEY", uuid),
    ("digitalocean", "DIGITALOCEAN_TOKEN", lambda: "dop_v1_" + r(HEX, 64)),
    ("shopify", "SHOPIFY_ACCESS_TOKEN", lambda: "shpat_" + r(HEX, 32)),
    ("databricks", "DATABRICKS_TOKEN", lambda: "dapi" + r(HEX, 32)),
    ("dockerhub", "DOCKERHUB_TOKEN", lambda: "dckr_pat_" + r(ALNUM + "_-", 27)),
    ("vault", "VAULT_TOKEN", lambda: "hvs." + r(ALNUM + "_-", 92)),
    ("newrelic", "NEW_RELIC_API_KEY", lambda: "NRAK-" + r(UP + DIG, 27)),
    ("azure-storage", "AZURE_STORAGE_CONNECTION_STRING",
     lambda: f"DefaultEndpointsProtocol=https;AccountName={r(LO,10)};AccountKey={b64(64)};EndpointSuffix=core.windows.net"),
    ("telegram", "TELEGRAM_BOT_TOKEN", lambda: f"{rng.randint(100000000, 999999999)}:AA{r(ALNUM + '_-', 33)}"),
    ("discord-webhook", "DISCORD_WEBHOOK", lambda: f"https://discord.com/api/webhooks/{r(DIG,18)}/{r(ALNUM + '_-', 68)}"),
    ("postgres-url", "DATABASE_URL", lambda: f"postgres://{r(LO,6)}:{r(ALNUM,18)}@db.{r(LO,6)}.internal:5432/{r(LO,5)}"),
    ("jwt", "SESSION_JWT", jwt),
    ("age", "AGE_KEY", lambda: "AGE-SECRET-KEY-1" + r("QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L".upper(), 58)),
    ("generic-api-key", "PAYMENTS_API_KEY", lambda: r(ALNUM, 32)),
    ("generic-secret", "client_secret", lambda: r(ALNUM + "_-", 40)),
    ("generic-password", "db_password", lambda: r(ALNUM, 6) + rng.choice("!#%&*") + r(ALNUM, 7)),
    ("private-key", None, lambda: pem(rng.choice(["RSA ", "EC ", "OPENSSH ", ""]))),
]

# Decoys: look like secrets, are not. (kind, variable name, value generator)
DECOYS = [
    ("aws-example", "AWS_ACCESS_KEY_ID", lambda: "AKIAIOSFODNN7EXAMPLE"),
    ("short-github", "GITHUB_TOKEN", lambda: "ghp_" + r(ALNUM, 20)),
    ("placeholder-github", "GITHUB_TOKEN", lambda: "ghp_" + "x" * 36),
    ("env-reference", "API_KEY", lambda: "${API_KEY}"),
    ("actions-expression", "token", lambda: "${{ secrets.GITHUB_TOKEN }}"),
    ("template", "password", lambda: "{{ .Values.db.password }}"),
    ("angle-placeholder", "api_key", lambda: "<your-api-key-here>"),
    ("changeme", "password", lambda: "changeme"),
    ("example-password", "password", lambda: "example-password-123"),
    ("git-sha", "commit", lambda: r(HEX, 40)),
    ("sha256-digest", "digest", lambda: "sha256:" + r(HEX, 64)),
    ("uuid-id", "request_id", uuid),
    ("version", "version", lambda: f"{rng.randint(0,9)}.{rng.randint(0,30)}.{rng.randint(0,99)}"),
    ("stripe-publishable", "STRIPE_PUBLISHABLE_KEY", lambda: "pk_live_" + r(ALNUM, 24)),
    ("url-no-password", "REPO_URL", lambda: f"https://{r(LO,6)}@github.com/{r(LO,6)}/{r(LO,8)}.git"),
    ("url-placeholder-password", "DATABASE_URL", lambda: "postgres://user:password@localhost:5432/app"),
    ("env-lookup", "token", lambda: 'os.environ["SERVICE_TOKEN"]'),
    ("function-call", "api_key", lambda: "load_key(config_path)"),
    ("css-color", "color", lambda: "#" + r(HEX, 6)),
    ("base64-image", "icon", lambda: "data:image/png;base64," + b64(24)),
    ("lorem", "description", lambda: " ".join(r(LO, rng.randint(3, 9)) for _ in range(6))),
    ("class-name", "secret_manager_class", lambda: "com.example.security.SecretManagerFactoryImpl"),
    ("file-path", "key_file", lambda: f"/etc/ssl/private/{r(LO,8)}.pem"),
    ("public-key", "ssh_public_key", lambda: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI" + r(ALNUM, 43) + " user@host"),
    ("redacted", "password", lambda: "********"),
    ("repeated", "secret", lambda: "a" * 32),
    ("jwt-truncated", "example_jwt", lambda: "eyJhbGciOiJIUzI1NiJ9...."),
    ("token-name", "token_type", lambda: "bearer"),
    ("boolean", "use_api_key", lambda: "true"),
    ("docs-fake-key", "api_key", lambda: "sk_test_FAKE_do_not_use"),
]

FORMATS = {
    "env": (".env", lambda k, v: f"{k}={v}"),
    "yaml": (".yaml", lambda k, v: f"{k.lower()}: \"{v}\""),
    "json": (".json", None),
    "py": (".py", lambda k, v: f"{k} = \"{v}\""),
    "js": (".js", lambda k, v: f"const {k.lower()} = '{v}';"),
    "sh": (".sh", lambda k, v: f"export {k}=\"{v}\""),
    "toml": (".toml", lambda k, v: f"{k.lower()} = \"{v}\""),
}

FILLER = {
    "env": ["# service configuration", "LOG_LEVEL=info", "PORT=8080", "REGION=eu-west-1", "FEATURE_FLAGS=search,export"],
    "yaml": ["# deployment settings", "replicas: 3", "image: registry.local/app:1.4.2", "timeout_seconds: 30", "region: eu-west-1"],
    "py": ["import os", "import logging", "TIMEOUT = 30", "log = logging.getLogger(__name__)", "def main():", "    return 0"],
    "js": ["'use strict';", "const port = 8080;", "const retries = 3;", "module.exports = { port, retries };", "// helper settings"],
    "sh": ["#!/bin/sh", "set -eu", "cd \"$(dirname \"$0\")\"", "echo starting", "exec ./server --port 8080"],
    "toml": ["[server]", "port = 8080", "workers = 4", "[log]", "level = \"info\""],
}


def secret_part(kind, value):
    """The part of a planted value that is the credential (URLs and connection strings carry
    public parts too); redaction is checked against this part."""
    if kind == "azure-storage":
        return value.split("AccountKey=")[1].split(";")[0]
    if kind == "postgres-url":
        return value.split("://")[1].split("@")[0].split(":")[1]
    if kind == "slack-webhook":
        return value.split("/services/")[1]
    if kind == "discord-webhook":
        return value.split("/webhooks/")[1]
    return value


def main():
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)
    items = []
    for kind, name, gen in SECRETS:
        for _ in range(5 if kind not in ("private-key", "generic-api-key", "generic-secret") else 8):
            items.append(("secret", kind, name, gen()))
    for kind, name, gen in DECOYS:
        for _ in range(7):
            items.append(("decoy", kind, name, gen()))
    rng.shuffle(items)
    expected = []
    fmts = sorted(FORMATS)
    n = 0
    while items:
        fmt = rng.choice(fmts)
        k = rng.randint(3, 7)
        take, items = items[:k], items[k:]
        n += 1
        ext, line_of = FORMATS[fmt]
        path = f"{fmt}/file{n:03d}{ext}"
        lines = []
        if fmt == "json":
            lines.append("{")
            entries = []
            for label, kind, name, value in take:
                if name is None:
                    value = value.replace("\n", "\\n")
                    name = "private_key"
                entries.append((label, kind, f'  "{name.lower()}": {json.dumps(value)}', value))
            entries.insert(0, (None, None, '  "service": "billing"', None))
            for i, (label, kind, text, value) in enumerate(entries):
                comma = "," if i + 1 < len(entries) else ""
                lines.append(text + comma)
                if label:
                    e = {"path": path, "line": len(lines), "label": label, "kind": kind}
                    if label == "secret":
                        e["value"] = value.split("\\n")[1] if "-----BEGIN" in value else secret_part(kind, value)
                    expected.append(e)
            lines.append("}")
        else:
            filler = FILLER[fmt]
            lines.append(filler[0])
            for label, kind, name, value in take:
                if rng.random() < 0.5:
                    lines.append(rng.choice(filler[1:]))
                if name is None:
                    # a private key in a heredoc or block
                    start = len(lines) + 1
                    if fmt == "yaml":
                        lines.append("tls_key: |")
                        lines.extend("  " + l for l in value.split("\n"))
                    elif fmt in ("py", "js", "toml"):
                        lines.append('KEY = """' if fmt != "js" else "const key = `")
                        lines.extend(value.split("\n"))
                        lines.append('"""' if fmt != "js" else "`;")
                    else:
                        lines.append("cat > key.pem <<'EOF'" if fmt == "sh" else "# key below")
                        lines.extend(value.split("\n") if fmt == "sh" else ["# " + l for l in value.split("\n")])
                        if fmt == "sh":
                            lines.append("EOF")
                    # the BEGIN line is the secret's line
                    begin = next(i for i in range(start, len(lines) + 1) if "-----BEGIN" in lines[i - 1])
                    expected.append({"path": path, "line": begin, "label": label, "kind": kind, "value": value.split("\n")[1]})
                    continue
                lines.append(line_of(name, value))
                e = {"path": path, "line": len(lines), "label": label, "kind": kind}
                if label == "secret":
                    e["value"] = secret_part(kind, value)
                expected.append(e)
            lines.append(rng.choice(filler[1:]))
        full = os.path.join(OUT, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "w") as f:
            f.write("\n".join(lines) + "\n")
    expected.sort(key=lambda e: (e["path"], e["line"]))
    with open(os.path.join(HERE, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)
        f.write("\n")
    s = sum(1 for e in expected if e["label"] == "secret")
    d = sum(1 for e in expected if e["label"] == "decoy")
    print(f"{n} files, {s} planted secrets, {d} decoys")


if __name__ == "__main__":
    main()
