'use strict';
// The action's post step (action.yml: runs.post). All logic lives in lib/run-phase.js.
require('./lib/run-phase').runPhase('post');
