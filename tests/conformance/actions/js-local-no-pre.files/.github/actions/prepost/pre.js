console.log('local pre ran');
