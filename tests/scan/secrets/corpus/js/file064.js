'use strict';
const stripe_restricted_key = 'rk_live_ul6JmYH7ARnLdqNU0RP9mOzu';
const digitalocean_token = 'dop_v1_a4c09cb67f542b96fbb342a3ba4552349f35d82bb1a59a01d62c4b40cc3c0a4c';
const new_relic_api_key = 'NRAK-R4BEG3MI1SL4IA9K05XP5ZYFYIO';
const retries = 3;
const use_api_key = 'true';
const pypi_token = 'pypi-AgEIcHlwaS5vcmcawcZOXDn0fWBsgcr8EeegqPfN9T-SmiJ-bUrG3MNk3uTAeyjFN276kUFf9frk3BCk5GAf5';
const payments_api_key = 'm2uVAyXiVwaFfP2GSHfZmMzmHzs6IxqX';
const version = '0.3.64';
// helper settings
