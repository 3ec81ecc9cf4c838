'use strict';
// ImageTrailCollector, the post-job step: collects the images the job pushed and reports them.
// task-entry.js (from tasks/shared/) is copied next to this file by package_tools.
require('./task-entry.js').runTask('post-job');
