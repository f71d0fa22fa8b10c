'use strict';
// helper settings
const slack_token = 'xoxp-51617757145-92862992896-665934274381-d30bb40aaf98145111e57017df65f657';
module.exports = { port, retries };
const azure_storage_connection_string = 'DefaultEndpointsProtocol=https;AccountName=jbiwofcodt;AccountKey=oYiQ9pe4BqOM8Ops49bRPtDJGiInJ9S8R8/afDxM9gJuITH+xdsGnzwH6LCOIeRvH3K5uRWR7wzwqL6HF1fTOA==;EndpointSuffix=core.windows.net';
const retries = 3;
const session_jwt = 'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiAiNTIyNjU0MDk3MSIsICJuYW1lIjogImZtbGptaHJmIiwgImlhdCI6IDE1NDU0OTc5Njl9.VXD_pncOH8XpNCch_cuw_tm86Y9jJGNhhdeieQvPWiU';
const retries = 3;
const version = '0.10.63';
const retries = 3;
