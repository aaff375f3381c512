"""The thresholds file of a running worker: versioned loading and change detection for hot reload.

Every worker polls the same file (a ConfigMap, a shared volume); a change is
validated before it replaces anything, so a bad file leaves the last good config
in force. The version on decisions and metrics is the file's ``version`` plus a
digest of its content, so workers that read the same bytes report the same version.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from detectors.config import DetectorConfig, load_config


def load_versioned(path: str | None) -> DetectorConfig:
    """The config at ``path`` (defaults when None), its version tagged with the content digest.

    >>> load_versioned(None).version
    'default'
    """
    cfg = load_config(path)
    if path is None:
        return cfg
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:8]
    return cfg.model_copy(update={"version": f"{cfg.version}@{digest}"})


class ConfigWatcher:
    """Says when the file changed since the last look (modification time, size and inode)."""

    def __init__(self, path: str | None):
        self.path = path
        self._seen = self._stamp()

    def _stamp(self) -> tuple[float, int, int] | None:
        if self.path is None:
            return None
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_mtime, st.st_size, st.st_ino)

    def changed(self) -> bool:
        stamp = self._stamp()
        if stamp is None or stamp == self._seen:
            return False
        self._seen = stamp
        return True
