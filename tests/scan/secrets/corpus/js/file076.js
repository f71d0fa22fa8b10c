'use strict';
const port = 8080;
const sendgrid_api_key = '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';
const icon = 'data:image/png;base64,QUaG1mAeUJzb117GuprgjAlaPHD3OAvv';
// helper settings
const key_file = '/etc/ssl/private/mtjltkig.pem';
const retries = 3;
const payments_api_key = 'WMWSduPilBfC0Qxgg0cYoiA7piZyhECD';
module.exports = { port, retries };
const database_url = 'postgres://tvwfkd:2hG6YcF6SmzJXejS5T@db.whefva.internal:5432/qntzt';
const port = 8080;
const repo_url = 'https://zlrapo@github.com/lrmgzl/pazknobw.git';
const port = 8080;
