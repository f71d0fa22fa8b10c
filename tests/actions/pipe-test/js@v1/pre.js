const fs = require('fs');
console.log(`pre: name=${process.env.INPUT_NAME}`);
fs.appendFileSync(process.env.GITHUB_STATE, `started=${process.env.INPUT_NAME}\n`);
