const t = process.env.INPUT_TOKEN;
console.log(`::add-mask::${t}`);
console.log(`the token is ${t}`);
require('fs').appendFileSync(process.env.GITHUB_OUTPUT, `echo=${t}\n`);
