'use strict';
const api_key = 'load_key(config_path)';
const retries = 3;
const icon = 'data:image/png;base64,+53CtZ6G2rhNqkZ8Q1+/1QEw0ohbs5f5';
const port = 8080;
const token_type = 'bearer';
const port = 8080;
const repo_url = 'https://gvvmra@github.com/ysxjbs/twfwyxyl.git';
module.exports = { port, retries };
const npm_token = 'npm_qREbP09tSu5mxtbDsAwEscBGN1FymocSLlCG';
const google_client_secret = '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';
const aws_secret_access_key = 'k42Toe0fcFrq7qVyUGK3FA9VO6Im713UWPLT6YB+';
// helper settings
