#!/usr/bin/env node
// Runs every server audit of graphql-http (the GraphQL over HTTP spec's conformance checks,
// https://github.com/graphql/graphql-http, `src/audits/server.ts`) against a running server.
//
//   node audit.mjs http://127.0.0.1:8080/graphql
//   AUDIT_TOKEN=eyJ… node audit.mjs http://127.0.0.1:8080/graphql
//
// Prints one line per audit (result, id, name), then the request and response of each failing
// audit. Exits 1 if an audit whose name starts with MUST or SHOULD fails; MAY audits are
// reported but never fail the run. Exits 2 on bad usage or if the server cannot be reached.
//
// AUDIT_TOKEN, when set, is sent as `Authorization: Bearer <token>` on every request. Consentry
// refuses introspection (`__type`, which some audits query) to anonymous callers, so without a
// token those audits fail for a reason that has nothing to do with the HTTP transport;
// scripts/graphql-http-audit.sh therefore runs the audits with a viewer token.

import { serverAudits } from 'graphql-http';

const TIMEOUT_MS = Number(process.env.AUDIT_TIMEOUT_MS || 10_000);
const BODY_LIMIT = 2_000;

const url = process.argv[2];
if (!url || process.argv.length > 3 || !/^https?:\/\//.test(url)) {
  console.error('usage: [AUDIT_TOKEN=…] node audit.mjs http://HOST:PORT/graphql');
  process.exit(2);
}
const token = process.env.AUDIT_TOKEN?.trim() || undefined;

/**
 * What went over the wire during the audit now running (for the failure report). The audits
 * run one at a time, and graphql-http may hand back a clone of the response it was given, so
 * exchanges are recorded per audit rather than per response object.
 */
let exchanges = [];

/**
 * `fetch` with the caller's token added and a timeout. The body is read here and the audits
 * get a copy, so that a failing audit's response body can still be printed after the audit
 * consumed it.
 */
async function fetchFn(input, init = {}) {
  const headers = new Headers(init.headers);
  if (token && !headers.has('authorization')) {
    headers.set('authorization', `Bearer ${token}`);
  }
  const method = init.method || 'GET';
  const res = await fetch(input, {
    ...init,
    headers,
    signal: init.signal ?? AbortSignal.timeout(TIMEOUT_MS),
  });
  const body = new Uint8Array(await res.arrayBuffer());
  const copy = new Response([101, 204, 205, 304].includes(res.status) ? null : body, {
    status: res.status,
    statusText: res.statusText,
    headers: res.headers,
  });
  const shown = new Headers(headers);
  if (shown.has('authorization')) shown.set('authorization', 'Bearer <AUDIT_TOKEN>');
  exchanges.push({
    request: {
      method,
      url: String(input),
      headers: Object.fromEntries(shown),
      body: typeof init.body === 'string' ? init.body : init.body == null ? null : '<binary>',
    },
    response: {
      status: res.status,
      contentType: res.headers.get('content-type'),
      body: new TextDecoder('utf-8').decode(body),
    },
  });
  return copy;
}

function level(name) {
  return name.split(' ', 1)[0]; // MUST, SHOULD or MAY
}

function truncate(text) {
  return text.length > BODY_LIMIT ? `${text.slice(0, BODY_LIMIT)}… (${text.length} chars)` : text;
}

const audits = serverAudits({ url, fetchFn });
const results = [];
// One at a time: the output is deterministic and the server sees one request at a time.
for (const { id, name, fn } of audits) {
  let result;
  exchanges = [];
  try {
    result = await fn();
  } catch (error) {
    // graphql-http throws only on fatal problems (e.g. the server cannot be reached).
    const cause = error?.cause ? ` (${error.cause.code || error.cause.message || error.cause})` : '';
    result = { id, name, status: 'fatal', reason: `${error?.message || error}${cause}` };
  }
  results.push({ ...result, exchanges });
  const mark =
    result.status === 'ok'
      ? 'PASS'
      : result.status === 'fatal'
        ? 'FATAL'
        : level(name) === 'MAY'
          ? 'skip'
          : 'FAIL';
  console.log(`${mark}  ${id}  ${name}${result.status === 'ok' ? '' : `  [${result.reason}]`}`);
}

const failed = results.filter((r) => r.status !== 'ok');
if (failed.length > 0) {
  console.log('\nFailing audits (request sent, response received):');
  for (const result of failed) {
    console.log(`\n--- ${result.id}  ${result.name}\n    reason: ${result.reason}`);
    for (const { request, response } of result.exchanges) {
      console.log(`    request: ${request.method} ${request.url}`);
      console.log(`    request headers: ${JSON.stringify(request.headers)}`);
      if (request.body !== null) console.log(`    request body: ${truncate(request.body)}`);
      console.log(`    response status: ${response.status}`);
      console.log(`    response content-type: ${response.contentType}`);
      console.log(`    response body: ${truncate(response.body)}`);
    }
  }
}

// A fatal error (no answer at all) fails the run whatever the audit's level.
const blocking = failed.filter((r) => r.status === 'fatal' || level(r.name) !== 'MAY');
const count = (lvl) => results.filter((r) => level(r.name) === lvl);
const summary = ['MUST', 'SHOULD', 'MAY']
  .map((lvl) => `${lvl} ${count(lvl).filter((r) => r.status === 'ok').length}/${count(lvl).length}`)
  .join(', ');
console.log(
  `\ngraphql-http audit of ${url} (${token ? 'with AUDIT_TOKEN' : 'anonymous'}): passed ${summary}`,
);
if (results.every((r) => r.status === 'fatal')) {
  console.error('every audit failed fatally: is the server running?');
  process.exit(2);
}
if (blocking.length > 0) {
  console.error(
    `${blocking.length} audit(s) failed (MUST/SHOULD, or fatal): ${blocking.map((r) => r.id).join(', ')}`,
  );
  process.exit(1);
}
console.log('every MUST and SHOULD audit passed');
