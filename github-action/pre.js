'use strict';
// The action's pre step (action.yml: runs.pre). All logic lives in lib/run-phase.js.
require('./lib/run-phase').runPhase('pre');
