"""What the services here need around their start: a ``--port`` argument
checked as such, whether a port is free before a slow start, and the end of
a log to show when a start failed. Each service words its own messages."""

from __future__ import annotations

import argparse
import socket
from pathlib import Path


def port_number(text: str) -> int:
    """A ``--port`` argument: an integer from 1 to 65535 (argparse's ``type``)."""
    port = int(text)
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a TCP port (1-65535)")
    return port


def bind_error(port: int, host: str = "127.0.0.1") -> OSError | None:
    """Why a server could not listen on ``host:port`` now, or None when it could.

    Checked before a start that takes seconds, so that a busy port fails at
    once with the option to change rather than in the server's own log.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As the servers do: a port left in TIME_WAIT by a stopped server is free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            return error
    return None


def log_tail(path: Path, lines: int) -> str:
    """The last ``lines`` lines of a log, headed by its path, for an error message."""
    try:
        text = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return f"({path} does not exist)"
    except OSError:
        return f"({path} could not be read)"
    return f"last lines of {path}:\n" + "\n".join(text[-lines:])
