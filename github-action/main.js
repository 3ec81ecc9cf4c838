'use strict';
// The action's main step (action.yml: runs.main). All logic lives in lib/run-phase.js.
require('./lib/run-phase').runPhase('main');
