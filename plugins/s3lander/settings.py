"""Project-wide settings read from the environment, with the defaults of the local stack.

Connection ids are the only things that change between the local stack and AWS; the
bucket and zone names can be overridden with ``LANDING_BUCKET`` / ``LANDING_ZONE``.
"""

from __future__ import annotations

import os
from pathlib import Path

#: the repository's include/ folder (configs, SQL); overridable for installs elsewhere
INCLUDE_DIR = Path(os.environ.get("S3LANDER_INCLUDE_DIR") or Path(__file__).resolve().parents[2] / "include")
CONFIG_DIR = INCLUDE_DIR / "config"

DEFAULT_AWS_CONN_ID = "aws_default"


def landing_bucket() -> str:
    return os.environ.get("LANDING_BUCKET", "landing")


def landing_zone() -> str:
    return os.environ.get("LANDING_ZONE", "raw")
