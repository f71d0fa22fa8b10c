console.log('lifecycle main');
