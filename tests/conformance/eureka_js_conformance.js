'use strict';
// Drives eureka-js-client (npm) through a full lifecycle against an aimp registry.
//
//   EUREKA_URL=http://127.0.0.1:8761/eureka APP=jsiris OTHER_APP=jsother node eureka_js_conformance.js
//
// After each step it prints one JSON line ({"step": ..., ...}) on stdout and waits for a
// line on stdin before going on, so that the test can check the registry over REST (and
// change it) between steps. Steps: registered, renewed, fetched, status_seen, reregistered,
// deregistered. Any failure prints {"step": "error", "message": ...} and exits 1.

const readline = require('readline');
const { Eureka } = require('eureka-js-client');

const base = new URL(process.env.EUREKA_URL || 'http://127.0.0.1:8761/eureka');
const APP = (process.env.APP || 'jsiris').toUpperCase();
const OTHER_APP = (process.env.OTHER_APP || 'jsother').toUpperCase();
const PORT = Number(process.env.INSTANCE_PORT || 9901);
const INSTANCE_ID = `127.0.0.1:${APP.toLowerCase()}:${PORT}`;
const STEP_TIMEOUT_MS = Number(process.env.STEP_TIMEOUT_MS || 10000);

const quiet = { debug() {}, info() {}, warn() {}, error() {} };

const client = new Eureka({
  logger: quiet,
  shouldUseDelta: true, // the first fetch is full, later ones use /apps/delta
  instance: {
    app: APP,
    instanceId: INSTANCE_ID,
    hostName: '127.0.0.1',
    ipAddr: '127.0.0.1',
    port: { $: PORT, '@enabled': true },
    vipAddress: APP.toLowerCase(),
    statusPageUrl: `http://127.0.0.1:${PORT}/healthz`,
    healthCheckUrl: `http://127.0.0.1:${PORT}/readyz`,
    dataCenterInfo: {
      '@class': 'com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo',
      name: 'MyOwn',
    },
    leaseInfo: { renewalIntervalInSecs: 1, durationInSecs: 30 },
    metadata: { 'aimp.revision': 'js1', 'aimp.runtime': 'node' },
  },
  eureka: {
    host: base.hostname,
    port: Number(base.port),
    servicePath: `${base.pathname.replace(/\/$/, '')}/apps/`,
    heartbeatInterval: 150,
    registryFetchInterval: 100,
    maxRetries: 0,
    filterUpInstances: false,
  },
});

const counts = { heartbeat: 0, registered: 0, registryUpdated: 0 };
for (const name of Object.keys(counts)) client.on(name, () => { counts[name] += 1; });

const lines = readline.createInterface({ input: process.stdin });
const waiting = [];
lines.on('line', () => { const next = waiting.shift(); if (next) next(); });
const proceed = () => new Promise((resolve) => waiting.push(resolve));

function report(step, data) {
  process.stdout.write(`${JSON.stringify({ step, counts: { ...counts }, ...data })}\n`);
}

function fail(message) {
  report('error', { message: String(message) });
  process.exit(1);
}

function until(what, predicate) {
  return new Promise((resolve, reject) => {
    const deadline = Date.now() + STEP_TIMEOUT_MS;
    const tick = () => {
      let value;
      try { value = predicate(); } catch (e) { reject(e); return; }
      if (value) resolve(value);
      else if (Date.now() > deadline) reject(new Error(`timed out waiting for ${what}`));
      else setTimeout(tick, 20);
    };
    tick();
  });
}

const summary = (inst) => ({
  instanceId: inst.instanceId,
  status: inst.status,
  port: inst.port && inst.port.$,
  metadata: inst.metadata,
});
const mine = () => client.getInstancesByAppId(APP).filter((i) => i.instanceId === INSTANCE_ID);

async function main() {
  await new Promise((resolve, reject) => client.start((err) => (err ? reject(err) : resolve())));
  report('registered', { seen: client.getInstancesByAppId(APP).map(summary) });
  await proceed();

  const before = counts.heartbeat;
  await until('three heartbeats', () => counts.heartbeat >= before + 3);
  report('renewed', {});
  await proceed(); // meanwhile the test registers OTHER_APP over REST

  const others = await until(`${OTHER_APP} in the fetched registry`, () => {
    const found = client.getInstancesByAppId(OTHER_APP);
    return found.length ? found : null;
  });
  report('fetched', { others: others.map(summary), viaDelta: client.hasFullRegistry });
  await proceed(); // meanwhile the test pins this instance OUT_OF_SERVICE over REST

  const pinned = await until('OUT_OF_SERVICE in the fetched registry', () => {
    const found = mine();
    return found.length && found[0].status === 'OUT_OF_SERVICE' ? found : null;
  });
  report('status_seen', { instance: summary(pinned[0]) });
  await proceed(); // meanwhile the test removes the override: heartbeats get 404

  const registrations = counts.registered;
  await until('a re-registration after a 404 heartbeat', () => counts.registered > registrations);
  const up = await until('UP again in the fetched registry', () => {
    const found = mine();
    return found.length && found[0].status === 'UP' ? found : null;
  });
  report('reregistered', { instance: summary(up[0]) });
  await proceed();

  await new Promise((resolve, reject) => client.stop((err) => (err ? reject(err) : resolve())));
  report('deregistered', {});
  lines.close();
}

main().catch(fail);
