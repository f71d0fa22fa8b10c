'use strict';
const retries = 3;
const mailgun_api_key = 'key-a74fb94c1001d61971470e8e441ce14a';
const example_jwt = 'eyJhbGciOiJIUzI1NiJ9....';
const github_token = 'ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx';
const github_oauth_token = 'gho_5jexHVg8SbrIZ7FlM9pVP16RkA78ivySNVlR';
module.exports = { port, retries };
const repo_url = 'https://gccqpi@github.com/brgebi/yiwcavir.git';
const port = 8080;
