require('fs').appendFileSync(process.env.GITHUB_OUTPUT, `double=${Number(process.env.INPUT_N) * 2}\n`);
