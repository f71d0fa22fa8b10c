const fs = require('fs');
const path = require('path');
const env = process.env;
console.log(`main: name=${env.INPUT_NAME} pre-state=${env.STATE_started || ''}`);
console.log(`main: my input=${env['INPUT_MY_INPUT']} fail-post=${env['INPUT_FAIL-POST']}`);
console.log(`main: action path ok=${fs.existsSync(path.join(env.GITHUB_ACTION_PATH, 'action.yml'))}`);
console.log(`main: cwd is workspace=${process.cwd() === env.GITHUB_WORKSPACE}`);
fs.appendFileSync(env.GITHUB_OUTPUT, `greeting=hello ${env.INPUT_NAME}\n`);
fs.appendFileSync(env.GITHUB_STATE, `main=${env.INPUT_NAME}\n`);
if (env.INPUT_FAIL === 'true') {
  console.log('::error::main failed on purpose');
  process.exit(1);
}
