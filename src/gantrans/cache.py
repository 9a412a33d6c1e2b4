"""Where gantrans keeps what it downloads or trains once: ``$GANTRANS_CACHE`` (~/.cache/gantrans)."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "GANTRANS_CACHE"


def cache_root() -> Path:
    """The cache folder: ``$GANTRANS_CACHE``, else ``~/.cache/gantrans``.

    Published models go to ``pretrained/`` under it, the evaluation judges to ``judges/``.
    """
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "gantrans"
