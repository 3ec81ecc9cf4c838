"""The read layer: the push/trail join, visibility, trace, explorer, coverage. The only readers of the tables
above the store; api, web and services call these functions."""
