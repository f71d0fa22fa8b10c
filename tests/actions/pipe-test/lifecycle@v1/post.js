console.log('lifecycle post after a failure');
