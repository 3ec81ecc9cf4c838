'use strict';
// ImageTrailWatch, the pre-job step: records the job start and starts the collector's push watcher.
// task-entry.js (from tasks/shared/) is copied next to this file by package_tools.
require('./task-entry.js').runTask('pre-job');
