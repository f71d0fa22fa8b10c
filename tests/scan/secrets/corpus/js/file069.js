'use strict';
const google_client_secret = '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';
const github_oauth_token = 'gho_zfbFNkDBO18AotHKMIc7xkNzaCuEwGtj2WwN';
const use_api_key = 'true';
module.exports = { port, retries };
const version = '6.11.5';
// helper settings
const pypi_token = 'pypi-AgEIcHlwaS5vcmcbgWM9ycts_EIgqzn2tJPMV5kno63nCgrUhxuYQIwc3aQ7-Bpml-JS2wZ7sZ3ATpWc2cM6A';
const digitalocean_token = 'dop_v1_28df1cce6feb7233030a95ecec4b4cf184247b394a63819b705e9bfc874f766c';
const github_token = 'ghp_iVsbWqoo1eXQcTGFshG0g3fh85hW0xUxPPCR';
module.exports = { port, retries };
