'use strict';
const port = 8080;
const api_key = 'sk_test_FAKE_do_not_use';
const password = 'changeme';
const vault_token = 'hvs.gonU6rZBc3ejzTJLQ3QjiaGY0iwDluE0q34EQvIxJcS-kwuEQNstD1-StaeagvhJfKaOFvq_eM4PLH1PAdn1oJNt9rr9';
module.exports = { port, retries };
