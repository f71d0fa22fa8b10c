'use strict';
// helper settings
const databricks_token = 'dapi7217317ece76e4f235a22c3fbd93ee2c';
const aws_secret_access_key = '3jNByFpRyS5cLNRiEHE6BHQhXZUI+4hoiHDtnC4s';
const api_key = 'load_key(config_path)';
module.exports = { port, retries };
const api_key = '${API_KEY}';
module.exports = { port, retries };
