'use strict';
const api_key = 'sk_test_FAKE_do_not_use';
const retries = 3;
const azure_storage_connection_string = 'DefaultEndpointsProtocol=https;AccountName=uzvpzvkkyp;AccountKey=9Hvv5fnVGEiF3ClaeM8DF4Y/ZSUreNKZHLz4YbeCwnNwn/ByOwwH/BapFumAvcMyrxgm3qbGymiPPujK8Wl0jw==;EndpointSuffix=core.windows.net';
const port = 8080;
const openai_api_key = 'sk-proj-bMr0VtY7KGAvcWccvstYpcQkT3BlbkFJF2NRiVPvFY3dRvDjfos6PJBn';
// helper settings
const request_id = '4fe36aeb-2ee3-1222-a37c-b0404855be2b';
const github_oauth_token = 'gho_rkgYkdK4XgJ413eLca3a03XGznpc3DEx44MU';
const digitalocean_token = 'dop_v1_d0b8bbd015ab2b47af1e71102d27debdba0a0766c58c1a0e8dd091b111fcbf1c';
// helper settings
const commit = 'beca8002bf023b0df807fc753da6d50945a8fb7b';
module.exports = { port, retries };
