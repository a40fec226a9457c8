"""One log line per event, key=value, no personal data (no bind values, e-mails, tokens)."""

from __future__ import annotations

import logging
import sys


def configure_logging(level: str) -> None:
    root = logging.getLogger()
    if getattr(root, "_lms_configured", False):
        root.setLevel(level)
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("%(asctime)s level=%(levelname)s logger=%(name)s %(message)s")
    )
    root.addHandler(handler)
    root.setLevel(level)
    root._lms_configured = True  # type: ignore[attr-defined]
    # Alembic announces every plugin it loads at INFO; keep the migration lines only.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
