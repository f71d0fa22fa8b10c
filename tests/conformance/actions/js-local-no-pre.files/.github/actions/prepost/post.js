console.log('local post ran');
