'use strict';
const retries = 3;
const stripe_publishable_key = 'pk_live_Vvi6FCX34raiGZ0TYmJfv1Cy';
const retries = 3;
const gitlab_token = 'glpat-ZUnZfOsdMzQdDY2sYaua';
const retries = 3;
const password = '{{ .Values.db.password }}';
const retries = 3;
