"""A podman of one test alone: its own event log and state (and storage, when it builds images).

The collector reads podman's event log for the job window. podman keeps one log per user, so on a
test machine shared by many tests the machine's log holds other tests' pushes: every test that runs
the collector gets its own empty log through ``CONTAINERS_CONF`` (podman's documented override of
containers.conf), and podman tests their own vfs storage through ``CONTAINERS_STORAGE_CONF``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict


def podman_env(directory: Path, storage: bool = False) -> Dict[str, str]:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "tmp").mkdir(exist_ok=True)
    containers = directory / "containers.conf"
    containers.write_text(f'[engine]\nevents_logger = "file"\n'
                          f'events_logfile_path = "{directory}/events.log"\ntmp_dir = "{directory}/tmp"\n',
                          encoding="utf-8")
    env = {"CONTAINERS_CONF": str(containers)}
    if storage:
        conf = directory / "storage.conf"
        conf.write_text(f'[storage]\ndriver = "vfs"\nrunroot = "{directory}/run"\n'
                        f'graphroot = "{directory}/graph"\n', encoding="utf-8")
        env["CONTAINERS_STORAGE_CONF"] = str(conf)
    return env
