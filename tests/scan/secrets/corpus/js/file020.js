'use strict';
const sendgrid_api_key = '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';
// helper settings
const client_secret = 'lFfO35pGGKBw_4pPGWo3oh31SvHSgpaCfS62Ns3r';
const icon = 'data:image/png;base64,i16JcZ10R5gVEFbFwOWvy4/D9Mv4J8E9';
const retries = 3;
const discord_webhook = 'https://discord.com/api/webhooks/511525475730861122/gMP_xUvZMLoF1ci-83ZeMRl98mZ4QtjY3NbjTBIgpy6b-ugEMAo-aKGsWLwlSzBgSvy1';
const example_jwt = 'eyJhbGciOiJIUzI1NiJ9....';
const dockerhub_token = 'dckr_pat_C1U2-pzM3-lKz8p8RZQe7CsRCZ5';
// helper settings
