"""Credentials never reach MLflow, the console or an error message.

Config values under secret-looking keys are masked whole; a password inside
a URI (``http://user:password@host``) is masked and the rest kept. Nothing here
imports TensorFlow, so quick commands (``mnist-ui``) can use it.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
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


MIN_SECRET_LENGTH = 3


def secret_values(value: Any, key: str = "") -> set[str]:
    """The credentials inside a config (a plain dict/list tree): the values of
    secret-looking keys and the passwords inside URIs."""
    if isinstance(value, dict):
        return set().union(*(secret_values(v, f"{key}.{k}" if key else str(k)) for k, v in value.items()))
    if isinstance(value, list):
        return set().union(*(secret_values(v, key) for v in value))
    found = set()
    if value is not None and SECRET_KEY.search(key.rsplit(".", 1)[-1]) and str(value) not in ("", "***"):
        found.add(str(value))
    if isinstance(value, str):
        found |= {match.group(0)[len(match.group(1)) : -1] for match in URI_PASSWORD.finditer(value)}
        for override in value.split():  # an override in a string: +trainer.api_token=abc
            name, sep, given = override.partition("=")
            if sep and SECRET_KEY.search(name.rsplit(".", 1)[-1]) and given not in ("", "***"):
                found.add(given)
    return found


def scrub_file(path: Path, secrets: set[str]) -> bool:
    """Replace every secret in the text file at ``path`` with ``***``; whether it changed."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError):
        return False
    scrubbed = text
    # A longer secret may contain a shorter one. Secrets of under 3 characters
    # are no secrets worth the name, and replacing them everywhere would
    # garble the files (every "1" for ``api_key=1``).
    for secret in sorted((s for s in secrets if len(s) >= MIN_SECRET_LENGTH), key=len, reverse=True):
        scrubbed = scrubbed.replace(secret, "***")
    if scrubbed == text:
        return False
    partial = path.with_name(path.name + ".scrub")
    partial.write_text(scrubbed)
    os.replace(partial, path)
    return True


class _RedactingRecords:
    """A log record factory that masks credentials in every message."""

    def __init__(self, factory):
        self.factory = factory

    def __call__(self, *args, **kwargs):
        record = self.factory(*args, **kwargs)
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a bad log call: logging itself reports it later
            return record
        masked = URI_PASSWORD.sub(r"\1***@", " ".join(redact_override(part) for part in message.split(" ")))
        if masked != message:
            record.msg, record.args = masked, None
        return record


def redact_logs() -> None:
    """From now on, every log message of the process has credentials masked
    (Hydra's launchers log each job's overrides); safe to call twice."""
    factory = logging.getLogRecordFactory()
    if not isinstance(factory, _RedactingRecords):
        logging.setLogRecordFactory(_RedactingRecords(factory))
