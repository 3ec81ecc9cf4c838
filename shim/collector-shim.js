'use strict';
/*
 * ImageTrail collector shim: runs the Python collector from a CI step and never breaks the job.
 *
 * Stable contract (used by tasks/shared/task-entry.js, which packaging copies with this file into each Azure
 * DevOps task folder, and by github-action/*.js):
 *
 *   const { runCollector } = require('<repo>/shim/collector-shim.js');
 *   const result = await runCollector({
 *     phase,            // 'pre-job' | 'post-job'
 *     root,             // folder holding src/imagetrail/ and vendor/*.whl (repository root, or the task folder)
 *     deadlineSeconds,  // hard deadline for the whole call (default 60); the collector gets a soft one 2 s shorter
 *     env,              // environment for the collector (default process.env); never modified
 *     log,              // function(line) that prints one line (default: write to stdout)
 *     systemPythons,    // system interpreter paths tried after PATH (default: /usr/bin/python3, /usr/local/bin/python3)
 *   });
 *
 * - The returned Promise never rejects. result = { status, exitCode, durationMs, python, warning }, where status is
 *   'ok' | 'disabled' | 'no-python' | 'old-python' | 'timeout' | 'failed' | 'bad-phase'.
 * - Anything that goes wrong becomes ONE warning line: '##vso[task.logissue type=warning]ImageTrail: ...' on Azure
 *   Pipelines, '::warning::ImageTrail: ...' when GITHUB_ACTIONS=true. The caller exits 0 whatever happens.
 * - IMAGETRAIL_DISABLE=true (pipeline variable imagetrail.disable) returns status 'disabled' silently.
 * - Python: the first interpreter >= 3.9 among python3, python and python3.N on PATH (every PATH folder, in
 *   order), then /usr/bin/python3, /usr/local/bin/python3, then the Windows 'py -3' launcher. Candidates are found
 *   by looking at the file system, not by running them; one whose real file name says it is too old (python3.8,
 *   e.g. actions/setup-python's python3 -> python3.8) is skipped unstarted, and the version check of the others runs
 *   inside the same process start as the collector, so the usual case costs one process.
 * - Python starts isolated (-E -s -S: PYTHON* variables, the user site and every site-packages .pth ignored;
 *   PYTHON* variables are also removed from its environment). The bootstrap puts root/src and every
 *   root/vendor/*.whl (pure wheels import from zip) on sys.path itself, and drops the working directory from it.
 * - The collector runs in its own process group, killed whole at the deadline. The shim returns when the collector
 *   exits, not when its stdio closes, so a background watcher started by the collector cannot hold the step open.
 * - Values of secret-looking environment variables (tokens, keys, passwords) and credentials inside URLs
 *   (scheme://user:password@host) are masked in everything printed.
 *
 * No dependencies beyond Node's standard library (Node >= 16).
 */

const childProcess = require('child_process');
const fs = require('fs');
const path = require('path');

const MIN_PYTHON = [3, 9];
const OLD_PYTHON_EXIT = 86;
const OLD_PYTHON_MARKER = 'IMAGETRAIL_SHIM_OLD_PYTHON';
const DEFAULT_DEADLINE_SECONDS = 60;
const SOFT_DEADLINE_MARGIN_SECONDS = 2;
const PHASES = ['pre-job', 'post-job'];
const SECRET_NAME = /(TOKEN|SECRET|PASSWORD|PASSWD|API_?KEY|PRIVATE_?KEY|CREDENTIAL)/i;
const KEPT_OUTPUT_LINES = 20;

// Well-known places of a system Python, after PATH (an old interpreter first on PATH must not stop the report).
const SYSTEM_PYTHONS = { posix: ['/usr/bin/python3', '/usr/local/bin/python3'], win32: [] };
// Isolated start: no PYTHON* variables (-E), no user site (-s), no site-packages and their .pth files (-S),
// unbuffered output (-u). Python 2 knows these flags too, so an old interpreter is still recognised. (-I would
// do the first two, but Python 2 refuses it.)
const PYTHON_FLAGS = ['-E', '-s', '-S', '-u'];

// Runs under any Python (even 2.x, whose syntax it keeps) so that an old interpreter is recognised, not crashed.
// argv: [root, phase]. The collector's own path is set here, never taken from the environment.
const BOOTSTRAP = [
  'import sys',
  `if sys.version_info[:2] < (${MIN_PYTHON[0]}, ${MIN_PYTHON[1]}):`,
  `    sys.stderr.write("${OLD_PYTHON_MARKER} %d.%d.%d\\n" % tuple(sys.version_info[:3]))`,
  `    sys.exit(${OLD_PYTHON_EXIT})`,
  'import os',
  'root = sys.argv[1]',
  'vendor = os.path.join(root, "vendor")',
  'try:',
  '    wheels = sorted(name for name in os.listdir(vendor) if name.endswith(".whl"))',
  'except OSError:',
  '    wheels = []',
  'here = os.getcwd()',
  'sys.path = [os.path.join(root, "src")] + [os.path.join(vendor, name) for name in wheels] + [',
  '    entry for entry in sys.path if entry not in ("", ".", here)]',
  'for stream in (sys.stdout, sys.stderr):',
  '    stream.reconfigure(encoding="utf-8", errors="replace")',
  'import runpy',
  'sys.argv = ["imagetrail", "collect"] + sys.argv[2:]',
  'runpy.run_module("imagetrail", run_name="__main__", alter_sys=True)',
].join('\n');

const VERSIONED_NAME = /^python(\d+)\.(\d+)(?:\.exe)?$/i;

function pathValue(env) {
  // Windows spells it Path; the environment is case-insensitive there.
  const key = Object.keys(env).find((name) => name.toUpperCase() === 'PATH');
  return key ? String(env[key] || '') : '';
}

function isExecutable(file, platform) {
  try {
    if (!fs.statSync(file).isFile()) return false;
    if (platform !== 'win32') fs.accessSync(file, fs.constants.X_OK);
    return true;
  } catch (err) {
    return false;
  }
}

// The version a file's real name states (python3.8 -> [3, 8]), or null when the name says nothing.
function versionFromName(file) {
  const match = VERSIONED_NAME.exec(path.basename(file));
  return match ? [Number(match[1]), Number(match[2])] : null;
}

function tooOld(version) {
  return version[0] < MIN_PYTHON[0] || (version[0] === MIN_PYTHON[0] && version[1] < MIN_PYTHON[1]);
}

// Interpreters to try, in order, found without starting any of them; each real file once. A generator: the
// folders of PATH are listed (for python3.N) only when no python3 or python before them would do.
function* pythonCandidates(env, platform, systemPythons) {
  const ext = platform === 'win32' ? '.exe' : '';
  // Relative entries ('.', '') would make the job's working directory a source of interpreters.
  const folders = pathValue(env).split(path.delimiter).filter((folder) => folder && path.isAbsolute(folder));
  const seen = new Set();
  const candidate = (file, name) => {
    if (!isExecutable(file, platform)) return null;
    let real;
    try {
      real = fs.realpathSync(file);
    } catch (err) {
      return null;
    }
    if (seen.has(real)) return null;
    seen.add(real);
    return { command: file, args: [], name, stated: versionFromName(real) || versionFromName(file) };
  };
  for (const name of ['python3', 'python']) {
    for (const folder of folders) {
      const found = candidate(path.join(folder, name + ext), name);
      if (found) yield found;
    }
  }
  const versioned = [];
  folders.forEach((folder, order) => {
    let entries = [];
    try {
      entries = fs.readdirSync(folder);
    } catch (err) {
      entries = [];
    }
    for (const entry of entries) {
      const version = versionFromName(entry);
      if (version && version[0] === 3 && !tooOld(version)) {
        versioned.push({ file: path.join(folder, entry), entry, version, order });
      }
    }
  });
  versioned.sort((a, b) => b.version[1] - a.version[1] || a.order - b.order);
  for (const item of versioned) {
    const found = candidate(item.file, item.entry.replace(/\.exe$/i, ''));
    if (found) yield found;
  }
  for (const file of systemPythons) {
    const found = candidate(file, file);
    if (found) yield found;
  }
  if (platform === 'win32') yield { command: 'py', args: ['-3'], name: 'py -3', stated: null };
}

function secretValues(env) {
  return Object.keys(env)
    .filter((name) => SECRET_NAME.test(name))
    .map((name) => env[name])
    .filter((value) => typeof value === 'string' && value.length >= 6)
    .sort((a, b) => b.length - a.length);
}

// scheme://user:password@host -> scheme://***@host (a backend or proxy URL may carry credentials).
const URL_CREDENTIALS = /\b([a-z][a-z0-9+.-]*:\/\/)[^\s/?#@]+@/gi;

function makeMasker(env) {
  const secrets = secretValues(env);
  return (text) => secrets
    .reduce((out, secret) => out.split(secret).join('***'), String(text))
    .replace(URL_CREDENTIALS, '$1***@');
}

// The collector's environment: the caller's, without PYTHON* variables (ignored by -E anyway, but they must
// not reach a Python the collector starts either).
function pythonFreeEnv(env) {
  const out = {};
  for (const [name, value] of Object.entries(env)) {
    if (!/^PYTHON/i.test(name)) out[name] = value;
  }
  return out;
}

function onGitHub(env) {
  return String(env.GITHUB_ACTIONS || '').toLowerCase() === 'true';
}

function warningLine(env, message) {
  const oneLine = message.replace(/\s+/g, ' ').trim();
  if (onGitHub(env)) {
    return '::warning::' + oneLine.replace(/%/g, '%25');
  }
  return '##vso[task.logissue type=warning]' + oneLine.replace(/%/g, '%AZP25');
}

// Collector output is shown, but it must not change the task result, variables or PATH: only the logging
// commands below pass; any other is shown inert.
const ALLOWED_AZURE_COMMANDS = /^##vso\[(task\.logissue type=warning[;\]]|task\.(addattachment|uploadfile|uploadsummary|setsecret|setprogress|logdetail)[ \]])/;
const ALLOWED_GITHUB_COMMANDS = /^::(warning|notice|debug|add-mask|group|endgroup)(\s[^:]*)?::/;

function neutralise(line) {
  if (ALLOWED_AZURE_COMMANDS.test(line) || ALLOWED_GITHUB_COMMANDS.test(line)) return line;
  // The agent acts on '##vso[' anywhere in a line, the GitHub runner on '::' at its start.
  const inert = line.split('##vso[').join('##[command-ignored] vso[');
  return inert.startsWith('::') ? '[command-ignored] ' + inert : inert;
}

function isDisabled(env) {
  return ['true', '1', 'yes'].includes(String(env.IMAGETRAIL_DISABLE || '').trim().toLowerCase());
}

function killGroup(child, platform) {
  if (!child.pid) return;
  try {
    if (platform === 'win32') {
      childProcess.spawnSync('taskkill', ['/pid', String(child.pid), '/T', '/F'], { stdio: 'ignore', windowsHide: true });
    } else {
      process.kill(-child.pid, 'SIGKILL');
    }
  } catch (err) {
    try { child.kill('SIGKILL'); } catch (ignored) { /* already gone */ }
  }
}

// One attempt with one interpreter. Resolves { kind: 'missing' | 'old' | 'exited' | 'timeout' | 'error', ... }.
function attempt(candidate, options) {
  const { env, deadlineAt, platform, onLine } = options;
  return new Promise((resolve) => {
    const remaining = deadlineAt - Date.now();
    if (remaining <= 0) {
      resolve({ kind: 'timeout' });
      return;
    }
    let child;
    try {
      const args = [...candidate.args, ...PYTHON_FLAGS, '-c', BOOTSTRAP, options.root, options.phase];
      child = childProcess.spawn(candidate.command, args, {
        env,
        cwd: options.cwd,
        stdio: ['ignore', 'pipe', 'pipe'],
        detached: platform !== 'win32', // own process group, so the deadline kill takes its children too
        windowsHide: true,
      });
    } catch (err) {
      resolve({ kind: 'error', error: err });
      return;
    }
    let settled = false;
    let oldVersion = null;
    const stderrTail = [];
    const finish = (result) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      // Stop reading: a detached grandchild that inherited these pipes must not keep the step alive.
      child.stdout.destroy();
      child.stderr.destroy();
      resolve(result);
    };
    const timer = setTimeout(() => {
      killGroup(child, platform);
      finish({ kind: 'timeout' });
    }, remaining);

    const lineReader = (stream, isStderr) => {
      let buffer = '';
      stream.setEncoding('utf8');
      stream.on('data', (chunk) => {
        buffer += chunk;
        let newline;
        while ((newline = buffer.indexOf('\n')) >= 0) {
          handle(buffer.slice(0, newline).replace(/\r$/, ''), isStderr);
          buffer = buffer.slice(newline + 1);
        }
      });
      stream.on('end', () => { if (buffer) handle(buffer, isStderr); buffer = ''; });
      stream.on('error', () => { /* destroyed on purpose after exit */ });
    };
    const handle = (line, isStderr) => {
      if (line.startsWith(OLD_PYTHON_MARKER)) {
        oldVersion = line.slice(OLD_PYTHON_MARKER.length).trim();
        return;
      }
      if (isStderr) {
        stderrTail.push(line);
        if (stderrTail.length > KEPT_OUTPUT_LINES) stderrTail.shift();
      }
      onLine(line);
    };
    lineReader(child.stdout, false);
    lineReader(child.stderr, true);

    child.on('error', (err) => {
      finish(err && err.code === 'ENOENT' ? { kind: 'missing' } : { kind: 'error', error: err });
    });
    // 'exit', not 'close': close waits for every holder of the pipes, including a detached watcher.
    child.on('exit', (code, signal) => {
      // Let already-buffered output arrive before deciding, without waiting for other pipe holders.
      setImmediate(() => {
        if (code === OLD_PYTHON_EXIT && oldVersion) finish({ kind: 'old', version: oldVersion });
        else finish({ kind: 'exited', code, signal, stderrTail });
      });
    });
  });
}

function lastMeaningfulLine(lines) {
  for (let i = lines.length - 1; i >= 0; i -= 1) {
    const line = lines[i].trim();
    if (line) return line;
  }
  return '';
}

async function runCollector(options = {}) {
  const started = Date.now();
  const env = options.env || process.env;
  const log = options.log || ((line) => process.stdout.write(line + '\n'));
  const platform = options.platform || process.platform;
  const mask = makeMasker(env);
  const say = (line) => {
    try { log(mask(line)); } catch (ignored) { /* logging must not break the step */ }
  };
  const done = (status, extra = {}) => {
    const result = { status, exitCode: null, python: null, warning: null, ...extra, durationMs: Date.now() - started };
    if (result.warning) say(warningLine(env, 'ImageTrail: ' + mask(result.warning)));
    return result;
  };

  try {
    if (isDisabled(env)) return done('disabled');
    const phase = options.phase;
    if (!PHASES.includes(phase)) {
      return done('bad-phase', { warning: `unknown phase '${phase}' (expected pre-job or post-job); nothing was collected` });
    }
    const root = path.resolve(options.root || path.join(__dirname, '..'));
    const deadlineSeconds = Number(options.deadlineSeconds) > 0 ? Number(options.deadlineSeconds) : DEFAULT_DEADLINE_SECONDS;
    const deadlineAt = started + deadlineSeconds * 1000;
    const softDeadline = Math.max(1, deadlineSeconds - SOFT_DEADLINE_MARGIN_SECONDS);
    const childEnv = {
      ...pythonFreeEnv(env),
      IMAGETRAIL_DEADLINE_SECONDS: String(softDeadline),
    };
    const systemPythons = options.systemPythons || SYSTEM_PYTHONS[platform === 'win32' ? 'win32' : 'posix'];
    let oldFound = null;
    for (const candidate of pythonCandidates(env, platform, systemPythons)) {
      if (candidate.stated && tooOld(candidate.stated)) {
        oldFound = oldFound || `${candidate.name} is Python ${candidate.stated.join('.')}`;
        continue; // its file name says it is too old: not worth a process start
      }
      const outcome = await attempt(candidate, {
        phase, root, env: childEnv, deadlineAt, platform, cwd: root, onLine: (line) => say(neutralise(line)),
      });
      const name = candidate.name;
      if (outcome.kind === 'missing') continue;
      if (outcome.kind === 'old') {
        oldFound = oldFound || `${name} is Python ${outcome.version}`;
        continue;
      }
      if (outcome.kind === 'timeout') {
        return done('timeout', {
          python: name,
          warning: `the collector did not finish within its ${deadlineSeconds} s deadline and was stopped; ` +
            'images pushed by this job may be missing from ImageTrail',
        });
      }
      if (outcome.kind === 'error') {
        return done('failed', { python: name, warning: `could not start ${name}: ${outcome.error.message}` });
      }
      if (outcome.code === 0) return done('ok', { python: name, exitCode: 0 });
      const why = outcome.signal ? `was killed by ${outcome.signal}` : `exited with code ${outcome.code}`;
      const detail = lastMeaningfulLine(outcome.stderrTail);
      return done('failed', {
        python: name,
        exitCode: outcome.code,
        warning: `the collector ${why}${detail ? ': ' + detail : ''}; images pushed by this job may be missing`,
      });
    }
    const looked = ['python3', 'python', 'python3.N on PATH', ...systemPythons];
    if (platform === 'win32') looked.push('py -3');
    if (oldFound) {
      return done('old-python', {
        warning: `Python >= ${MIN_PYTHON.join('.')} is needed on the agent, but ${oldFound} and no newer one was ` +
          `found (looked for ${looked.join(', ')}); install a newer Python (or set the pipeline variable ` +
          'imagetrail.disable=true)',
      });
    }
    return done('no-python', {
      warning: `no Python found (looked for ${looked.join(', ')}); install Python >= ${MIN_PYTHON.join('.')} ` +
        'on the agent (or set the pipeline variable imagetrail.disable=true)',
    });
  } catch (err) {
    return done('failed', { warning: `unexpected error in the collector shim: ${err && err.message}` });
  }
}

module.exports = { runCollector, pythonCandidates, warningLine, neutralise, BOOTSTRAP, makeMasker };
