'use strict';
const retries = 3;
const digest = 'sha256:15d551de4e167b5110b30bd78f83a6c059287b49ebbcfe55ae80d17b012e029f';
const password = '********';
const token = '${{ secrets.GITHUB_TOKEN }}';
const retries = 3;
const gitlab_token = 'glpat-_jnCbnrrchQxdQ7EqTW2';
// helper settings
