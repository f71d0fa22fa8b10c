console.log('lifecycle pre');
