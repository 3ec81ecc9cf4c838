'use strict';
// The action's three steps. pre: start watching pushes at job start; main: note that it ran;
// post: collect and report at job end. Whatever happens, the step succeeds: problems become one
// ::warning:: line each, and secrets are masked before anything is logged.

const fs = require('fs');
const os = require('os');
const path = require('path');
const { getInput, command, appendFileCommand } = require('./workflow-commands');

const ROOT = path.resolve(__dirname, '..', '..');
const SHIM_PATH = path.join(ROOT, 'shim', 'collector-shim.js');
const PREFIX = 'ImageTrail: ';

const DEFAULT_DEADLINE_SECONDS = 45;
// The collector caps its own deadline at 55 s (imagetrail.collector.settings) and the shim gives it
// 2 s less than the step's: 57 s is the longest step deadline the collector can honour.
const MAX_DEADLINE_SECONDS = 57;
// pre only starts the watcher; it must not hold up the job's first real step.
const PRE_DEADLINE_SECONDS = 20;
// Beyond the collector's own deadline, how long we wait before giving up on it.
const GRACE_SECONDS = 5;
const DEFAULT_AUDIENCE = 'api://imagetrail';

// Names shared by pre, main and post through GITHUB_STATE (read back as STATE_<name>).
const STATE = { disabled: 'disabled', preStartedAt: 'pre-started-at', mainRan: 'main-ran' };

function print(line) {
  process.stdout.write(`${line}\n`);
}

function warn(message) {
  print(command('warning', PREFIX + message));
}

function parseBoolean(env, name, fallback, quiet = false) {
  const raw = getInput(env, name);
  if (raw === '') {
    return fallback;
  }
  // Same accepted spellings as core.getBooleanInput (YAML 1.2 core schema).
  if (['true', 'True', 'TRUE'].includes(raw)) {
    return true;
  }
  if (['false', 'False', 'FALSE'].includes(raw)) {
    return false;
  }
  if (!quiet) {
    warn(`input '${name}' must be true or false, got '${raw}'; using ${fallback}.`);
  }
  return fallback;
}

function parseDeadline(env, quiet) {
  const raw = getInput(env, 'deadline-seconds');
  if (raw === '') {
    return DEFAULT_DEADLINE_SECONDS;
  }
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 1 || value > MAX_DEADLINE_SECONDS) {
    if (!quiet) {
      warn(`input 'deadline-seconds' must be a whole number from 1 to ${MAX_DEADLINE_SECONDS}, ` +
        `got '${raw}'; using ${DEFAULT_DEADLINE_SECONDS}.`);
    }
    return DEFAULT_DEADLINE_SECONDS;
  }
  return value;
}

function defaultReportFile(env) {
  const job = [env.GITHUB_RUN_ID, env.GITHUB_RUN_ATTEMPT, env.GITHUB_JOB].filter(Boolean).join('-');
  const name = `imagetrail-report${job ? `-${job.replace(/[^A-Za-z0-9_.-]/g, '_')}` : ''}.json`;
  return path.join(env.RUNNER_TEMP || os.tmpdir(), name);
}

// quiet: input problems were already reported by an earlier step of this action.
function readSettings(env, quiet = false) {
  const apiKey = getInput(env, 'api-key');
  // Mask before anything else can print: the runner then hides them in every later log line.
  // The OIDC token itself is fetched, and masked in its output, by the collector.
  for (const secret of [apiKey, env.ACTIONS_ID_TOKEN_REQUEST_TOKEN]) {
    if (secret) {
      print(command('add-mask', secret));
    }
  }
  return {
    disabled: parseBoolean(env, 'disable', false, quiet),
    dryRun: parseBoolean(env, 'dry-run', false, quiet),
    backendUrl: getInput(env, 'backend-url'), // the `with:` input only: a step can set env for later ones
    audience: getInput(env, 'audience') || DEFAULT_AUDIENCE,
    apiKey,
    reportFile: getInput(env, 'report-file') || defaultReportFile(env),
    deadlineSeconds: parseDeadline(env, quiet),
  };
}

// The collector's environment: the runner's variables minus this action's INPUT_* (the API key
// goes only where the collector reads it) and minus every IMAGETRAIL_* variable, plus the IMAGETRAIL_*
// settings from the `with:` inputs. Any earlier step can add variables to the job's environment
// ($GITHUB_ENV), so none of them may decide where the job's token goes. Kept, as they send nothing
// anywhere: IMAGETRAIL_ENGINE_DIR (the shared-engine directory of self-hosted runners) and the
// delivery breaker's settings (IMAGETRAIL_STATE_DIR, _BREAKER_SECONDS, _PROBE_SECONDS).
const RUNNER_SETTINGS = new Set(['IMAGETRAIL_ENGINE_DIR', 'IMAGETRAIL_STATE_DIR', 'IMAGETRAIL_BREAKER_SECONDS',
  'IMAGETRAIL_PROBE_SECONDS']);

function collectorEnv(env, settings) {
  const child = {};
  for (const [name, value] of Object.entries(env)) {
    const upper = name.toUpperCase();
    if (!/^(INPUT_|STATE_)/.test(upper) && (!upper.startsWith('IMAGETRAIL_') || RUNNER_SETTINGS.has(upper))) {
      child[name] = value;
    }
  }
  Object.assign(child, {
    GITHUB_ACTIONS: 'true',
    IMAGETRAIL_AUDIENCE: settings.audience,
    IMAGETRAIL_REPORT_FILE: settings.reportFile,
  });
  if (settings.backendUrl) {
    child.IMAGETRAIL_URL = settings.backendUrl;
  }
  if (settings.apiKey) {
    child.IMAGETRAIL_API_KEY = settings.apiKey;
  }
  if (settings.dryRun) {
    child.IMAGETRAIL_DRY_RUN = 'true';
  }
  return child;
}

function loadShim() {
  try {
    return require(SHIM_PATH);
  } catch (error) {
    warn(`the collector is missing from this copy of the action (${path.relative(ROOT, SHIM_PATH)}: ` +
      `${error.code || error.message}); nothing was collected. Use the action from a full checkout ` +
      'of the ImageTrail repository.');
    return null;
  }
}

async function runCollector(phase, settings, env, deadlineSeconds) {
  const shim = loadShim();
  if (!shim) {
    return null;
  }
  let timer;
  const overdue = new Promise((resolve) => {
    timer = setTimeout(() => resolve('overdue'), (deadlineSeconds + GRACE_SECONDS) * 1000);
  });
  const run = Promise.resolve()
    .then(() => shim.runCollector({
      phase, root: ROOT, deadlineSeconds, env: collectorEnv(env, settings), log: print,
    }))
    .catch((error) => {
      // The shim promises never to reject; if it does anyway, the job still goes on.
      warn(`the collector could not run (${error && error.message ? error.message : error}).`);
      return null;
    });
  const result = await Promise.race([run, overdue]);
  clearTimeout(timer);
  if (result === 'overdue') {
    warn(`the ${phase} collector did not finish within ${deadlineSeconds} s; the job goes on without it.`);
    return null;
  }
  return result;
}

function saveState(env, name, value) {
  if (!appendFileCommand(env.GITHUB_STATE, name, value)) {
    warn('GITHUB_STATE is not set by this runner; the post step cannot see what the pre step did.');
  }
}

function setOutput(env, name, value) {
  appendFileCommand(env.GITHUB_OUTPUT, name, value);
}

// The report this post step wrote; an older file at the same path (a custom report-file in a reused
// workspace) must not become this job's outputs.
function readReport(file, notBeforeMs) {
  try {
    if (fs.statSync(file).mtimeMs < notBeforeMs) {
      return null;
    }
    return JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (error) {
    return null;
  }
}

async function pre(env) {
  const settings = readSettings(env);
  if (settings.disabled) {
    saveState(env, STATE.disabled, 'true');
    print(`${PREFIX}disabled by the 'disable' input; this job's pushes are not collected.`);
    return;
  }
  saveState(env, STATE.preStartedAt, new Date().toISOString());
  await runCollector('pre-job', settings, env, Math.min(settings.deadlineSeconds, PRE_DEADLINE_SECONDS));
}

async function main(env) {
  if (env[`STATE_${STATE.disabled}`] === 'true') {
    return;
  }
  saveState(env, STATE.mainRan, 'true');
  print(`${PREFIX}watching this job's image pushes; they are reported in the post step at the end of the job.`);
}

async function post(env) {
  if (env[`STATE_${STATE.disabled}`] === 'true') {
    return; // the pre step already said so
  }
  const settings = readSettings(env, Boolean(env[`STATE_${STATE.preStartedAt}`]));
  if (settings.disabled) {
    print(`${PREFIX}disabled by the 'disable' input; this job's pushes are not collected.`);
    return;
  }
  // Whole seconds: some file systems keep coarse modification times.
  const startedMs = Math.floor(Date.now() / 1000) * 1000 - 1000;
  await runCollector('post-job', settings, env, settings.deadlineSeconds);
  const report = readReport(settings.reportFile, startedMs);
  if (report) {
    setOutput(env, 'report-id', report.reportId || '');
    setOutput(env, 'pushes', String(Array.isArray(report.pushes) ? report.pushes.length : 0));
    setOutput(env, 'report-file', settings.reportFile);
  }
}

const PHASES = { pre, main, post };

// Entry point of pre.js / main.js / post.js: never throws, never sets a failing exit code.
function runPhase(name, env = process.env) {
  const fail = (error) => {
    warn(`unexpected error in the ${name} step (${error && error.message ? error.message : error}); ` +
      'the job goes on.');
  };
  process.on('uncaughtException', fail);
  process.on('unhandledRejection', fail);
  return Promise.resolve()
    .then(() => PHASES[name](env))
    .catch(fail)
    .then(() => {
      // Leftover handles (a child the collector left behind) must not keep the step alive.
      process.exit(0);
    });
}

module.exports = { runPhase, readSettings, collectorEnv, defaultReportFile, STATE };
