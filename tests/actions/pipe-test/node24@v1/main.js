console.log('node24 main');
