'use strict';
// Shared entry of the ImageTrail tasks (ImageTrailWatch = pre-job, ImageTrailCollector = post-job).
// package_tools copies this file, the shim and the collector into each task folder; each folder's
// index.js is one line that fixes the phase: require('./task-entry.js').runTask('<phase>').
// No azure-pipelines-task-lib: the agent passes each task input as the environment variable
// INPUT_<NAME> (upper case, spaces as '_'; azure-pipelines-agent Handler.AddInputsToEnvironment)
// and each non-secret pipeline variable as its upper-cased name with '.' as '_' (imagetrail.url -> IMAGETRAIL_URL).
// Whatever happens, the task succeeds: problems are one warning line printed by the shim.

const path = require('path');

// Packaged layout: the shim sits next to this file, the collector in ./src and ./vendor.
const root = __dirname;
const shimPath = path.join(root, 'collector-shim.js');

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

async function main(phase) {
  const env = process.env;
  const { runCollector } = require(shimPath);
  await runCollector({
    phase,
    root,
    deadlineSeconds: Number(input('deadlineSeconds', env)) || 50,
    env: collectorEnvironment(env),
  });
}

// Runs one phase as the task's whole work; the task always ends with exit code 0.
function runTask(phase) {
  main(phase)
    .catch((err) => {
      // Only reachable if the shim itself cannot be loaded.
      process.stdout.write(`##vso[task.logissue type=warning]ImageTrail: the task could not start (${err && err.message})\n`);
    })
    .finally(() => {
      process.exitCode = 0;
    });
}

module.exports = { runTask };
