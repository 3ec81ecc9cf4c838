'use strict';
// Entry point of the ImageTrail Collector task (execution handlers Node20_1 / Node24).
// No azure-pipelines-task-lib: the agent passes each task input as the environment variable
// INPUT_<NAME> (upper case, spaces as '_'; azure-pipelines-agent Handler.AddInputsToEnvironment)
// and each non-secret pipeline variable as its upper-cased name with '.' as '_' (imagetrail.url -> IMAGETRAIL_URL).
// Whatever happens, the task succeeds: problems are one warning line printed by the shim.

const fs = require('fs');
const path = require('path');

// Packaged: the shim and the collector sources sit next to this file. In the repository: two folders up.
const packaged = fs.existsSync(path.join(__dirname, 'collector-shim.js'));
const root = packaged ? __dirname : path.join(__dirname, '..', '..');
const shimPath = packaged ? path.join(__dirname, 'collector-shim.js') : path.join(root, 'shim', 'collector-shim.js');

// An input left as an unexpanded macro such as "$(imagetrail.audience)" means "not set".
function input(name, env) {
  const value = (env['INPUT_' + name.replace(/ /g, '_').toUpperCase()] || '').trim();
  return /^\$\([^)]*\)$/.test(value) ? '' : value;
}

// A pipeline variable (imagetrail.url, imagetrail.audience) overrides the value baked into the decorator.
function collectorEnvironment(env) {
  const out = { ...env };
  const url = (env.IMAGETRAIL_URL || '').trim() || input('backendUrl', env);
  const audience = (env.IMAGETRAIL_AUDIENCE || '').trim() || input('audience', env);
  if (url) out.IMAGETRAIL_URL = url;
  if (audience) out.IMAGETRAIL_AUDIENCE = audience;
  return out;
}

async function main() {
  const env = process.env;
  const { runCollector } = require(shimPath);
  await runCollector({
    phase: input('phase', env) || 'post-job',
    root,
    deadlineSeconds: Number(input('deadlineSeconds', env)) || 50,
    env: collectorEnvironment(env),
  });
}

main()
  .catch((err) => {
    // Only reachable if the shim itself cannot be loaded.
    process.stdout.write(`##vso[task.logissue type=warning]ImageTrail: the task could not start (${err && err.message})\n`);
  })
  .finally(() => {
    process.exitCode = 0;
  });
