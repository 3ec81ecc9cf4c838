'use strict';
// The runner's side of the contract, without @actions/core: the action runs straight from the
// repository (no node_modules, no bundling), so the few commands it needs are written here.
// Formats: GitHub Docs, "Workflow commands for GitHub Actions" and actions/toolkit packages/core.

const crypto = require('crypto');
const fs = require('fs');
const os = require('os');

// core.getInput: INPUT_ + name with spaces replaced by '_' and upper-cased; hyphens are kept.
function inputName(name) {
  return `INPUT_${name.replace(/ /g, '_').toUpperCase()}`;
}

function getInput(env, name) {
  return (env[inputName(name)] || '').trim();
}

// Percent-encode what would end or split a workflow command (same escaping as core's command.ts).
function escapeData(value) {
  return String(value).replace(/%/g, '%25').replace(/\r/g, '%0D').replace(/\n/g, '%0A');
}

function command(name, message) {
  return `::${name}::${escapeData(message)}`;
}

function fileCommandEntry(name, value) {
  const text = String(value);
  if (!/[\r\n]/.test(text)) {
    return `${name}=${text}${os.EOL}`;
  }
  // Multi-line values use the heredoc form with a delimiter the value cannot contain.
  let delimiter;
  do {
    delimiter = `ghadelimiter_${crypto.randomUUID()}`;
  } while (text.includes(delimiter));
  return `${name}<<${delimiter}${os.EOL}${text}${os.EOL}${delimiter}${os.EOL}`;
}

// Append name=value to a runner file command (GITHUB_STATE, GITHUB_OUTPUT). Returns false when the
// runner did not give that file, so callers can say so instead of failing the job.
function appendFileCommand(path, name, value) {
  if (!path) {
    return false;
  }
  fs.appendFileSync(path, fileCommandEntry(name, value), { encoding: 'utf8' });
  return true;
}

module.exports = { inputName, getInput, escapeData, command, fileCommandEntry, appendFileCommand };
