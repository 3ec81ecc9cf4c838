'use strict';
// Entry of the ImageTrail task (ImageTrailCollector), for both decorator steps: the pre-job step passes
// the input imagetrailPhase 'pre-job', the post-job step 'post-job'. One task, so the .vsix carries the
// collector once (the agent downloads each task on its own: two tasks could not share one copy).
// package_tools copies this file, the shim and the collector into the task folder; its index.js is one
// line: require('./task-entry.js').runTask(). The shim refuses any other phase with one warning.
// No azure-pipelines-task-lib: the agent passes each task input as the environment variable
// INPUT_<NAME> (upper case, spaces as '_'; azure-pipelines-agent Handler.AddInputsToEnvironment)
// and each non-secret pipeline variable as its upper-cased name with '.' as '_'.
// Whatever happens, the task succeeds: problems are one warning line printed by the shim.
//
// Where the job's credentials go is decided by whoever built the extension, never by the job: the backend URL,
// the token audience and the Entra authority come from imagetrail-task.json, written into this folder by
// `python -m package_tools build`. Any step of a job can set pipeline variables (##vso[task.setvariable]) and so
// environment variables of the later steps; those are not read for these settings.

const fs = require('fs');
const path = require('path');

// Packaged layout: the shim sits next to this file, the collector in ./src and ./vendor.
const root = __dirname;
const shimPath = path.join(root, 'collector-shim.js');
const BAKED_SETTINGS = path.join(root, 'imagetrail-task.json');
// The only IMAGETRAIL_* settings a job may pass on: none of them changes where a credential is sent.
const JOB_SETTINGS = new Set([
  'IMAGETRAIL_DISABLE',
  'IMAGETRAIL_DRY_RUN',
  'IMAGETRAIL_REPORT_FILE',
  'IMAGETRAIL_API_KEY',
  'IMAGETRAIL_ENGINE_DIR',
  'IMAGETRAIL_STATE_DIR', // the host's delivery breaker (docs/azure-devops.md, "When the backend is down")
  'IMAGETRAIL_BREAKER_SECONDS',
  'IMAGETRAIL_PROBE_SECONDS',
  'IMAGETRAIL_SERVICE_CONNECTION_ID',
  'IMAGETRAIL_ENTRA_CLIENT_ID',
  'IMAGETRAIL_ENTRA_TENANT_ID',
  'IMAGETRAIL_ENTRA_SCOPE',
  'IMAGETRAIL_ENTRA_MANAGED_IDENTITY',
]);

// An input left as an unexpanded macro such as "$(imagetrail.deadline)" means "not set".
function input(name, env) {
  const value = (env['INPUT_' + name.replace(/ /g, '_').toUpperCase()] || '').trim();
  return /^\$\([^)]*\)$/.test(value) ? '' : value;
}

function bakedSettings(file = BAKED_SETTINGS) {
  try {
    const data = JSON.parse(fs.readFileSync(file, 'utf8'));
    return data && typeof data === 'object' ? data : {};
  } catch (err) {
    return {}; // no backend baked in: the collector keeps the report and says so
  }
}

function text(value) {
  return typeof value === 'string' ? value.trim() : '';
}

// The job's environment without IMAGETRAIL_* settings other than JOB_SETTINGS, plus the baked ones.
function collectorEnvironment(env, baked = bakedSettings()) {
  const out = {};
  for (const [name, value] of Object.entries(env)) {
    if (!name.toUpperCase().startsWith('IMAGETRAIL_') || JOB_SETTINGS.has(name.toUpperCase())) out[name] = value;
  }
  const settings = {
    IMAGETRAIL_URL: text(baked.backendUrl),
    IMAGETRAIL_AUDIENCE: text(baked.audience),
    IMAGETRAIL_ENTRA_AUTHORITY_HOST: text(baked.entraAuthorityHost),
  };
  for (const [name, value] of Object.entries(settings)) {
    if (value) out[name] = value;
  }
  return out;
}

async function main() {
  const env = process.env;
  const phase = input('imagetrailPhase', env);
  const { runCollector } = require(shimPath);
  await runCollector({
    phase,
    root,
    deadlineSeconds: Number(input('deadlineSeconds', env)) || 50,
    env: collectorEnvironment(env),
  });
}

// Runs the step's phase as the task's whole work; the task always ends with exit code 0.
function runTask() {
  main()
    .catch((err) => {
      // Only reachable if the shim itself cannot be loaded.
      process.stdout.write(`##vso[task.logissue type=warning]ImageTrail: the task could not start (${err && err.message})\n`);
    })
    .finally(() => {
      process.exitCode = 0;
    });
}

module.exports = { runTask, collectorEnvironment };
