"""WSGI module for `api_bench.py --gunicorn`: lms_app against the benchmark database.

    BENCH_DATABASE_URL=postgresql://... REDIS_URL=redis://... [BENCH_PAGE_CACHE=0] \
        gunicorn -w 2 -b 127.0.0.1:PORT --pythonpath bench bench_wsgi:app
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))

from bench.api_bench import DEFAULT_REDIS_URL, make_settings  # noqa: E402
from bench.data import DEFAULT_URL  # noqa: E402
from lms_app import create_app  # noqa: E402

app = create_app(
    make_settings(
        os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL),
        os.environ.get("REDIS_URL", DEFAULT_REDIS_URL),
        cache_catalog_pages=os.environ.get("BENCH_PAGE_CACHE", "1") != "0",
    )
)
