"""What the tests share, and the tools that run as scripts beside them.

``TempStore`` (``helpers.store``) is the one way a test starts ``run.py`` (or
``predict.py``) and the one way it reads a store's runs; ``skip_or_fail``
(``helpers.requirements``) is how a test that needs a real component skips.
The scripts ``fault_injection.py``, ``ui_browser.py`` and
``dashboard_browser.py`` are also ``make`` targets. Nothing here imports
TensorFlow or MLflow at import time.
"""

from helpers.requirements import OPTIONAL_COMPONENTS, REQUIRE_E2E, REQUIRE_OPTIONAL, skip_or_fail
from helpers.store import REPORT_FILES, TempStore

__all__ = ["OPTIONAL_COMPONENTS", "REPORT_FILES", "REQUIRE_E2E", "REQUIRE_OPTIONAL", "TempStore", "skip_or_fail"]
