"""Credentials never reach MLflow, the console or an error message.

Config values under secret-looking keys are masked whole; a password inside
a URI (``http://user:password@host``) is masked and the rest kept. Nothing here
imports TensorFlow, so quick commands (``mnist-ui``) can use it.
"""

from __future__ import annotations

import re
from typing import Any

# Config keys that look like credentials; their values are masked whole.
SECRET_KEY = re.compile(r"token|password|passwd|secret|key", re.IGNORECASE)
# ``scheme://user:password@host``: the user may be empty (``https://:token@host``)
# and an unescaped password may hold ``@``: everything up to the host's ``@`` goes.
URI_PASSWORD = re.compile(r"(://[^/:@\s]*:)[^/\s]+@")


def redact(value: Any, key: str = "") -> Any:
    """``value`` with credentials masked: values under secret-looking keys, and
    passwords inside URIs (``http://user:pw@host``)."""
    if SECRET_KEY.search(key.rsplit(".", 1)[-1]):
        return "***"
    if isinstance(value, dict):
        return {k: redact(v, f"{key}.{k}" if key else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, key) for v in value]
    if isinstance(value, str):
        return URI_PASSWORD.sub(r"\1***@", value)
    return value


def redact_override(override: str) -> str:
    """A command-line override (``key=value``) with its value masked as ``redact`` would."""
    key, sep, value = override.partition("=")
    return f"{key}{sep}{redact(value, key.lstrip('+~'))}" if sep else override
