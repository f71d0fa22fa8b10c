console.log('local main ran');
