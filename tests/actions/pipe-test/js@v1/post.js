const env = process.env;
console.log(`post: started=${env.STATE_started || ''} main=${env.STATE_main || ''}`);
if (env['INPUT_FAIL-POST'] === 'true') {
  console.log('post failed on purpose');
  process.exit(3);
}
