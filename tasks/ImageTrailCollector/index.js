'use strict';
// ImageTrailCollector, both decorator steps: the input imagetrailPhase says which (pre-job: record the job
// start and start the push watcher; post-job: collect the images the job pushed and report them).
// task-entry.js (from tasks/shared/) is copied next to this file by package_tools.
require('./task-entry.js').runTask();
