console.log(`env FROM_STEP=${process.env.FROM_STEP}`);
