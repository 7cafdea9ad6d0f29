"""What the services share around a start: the port argument, the busy-port
check before a slow start, and the end of a log shown when a start failed."""

import argparse
import errno
import socket

import pytest

from mnist_runner.services import startup


@pytest.mark.parametrize("text", ["1", "5000", "65535"])
def test_a_tcp_port_is_taken_as_it_is(text):
    assert startup.port_number(text) == int(text)


@pytest.mark.parametrize("text", ["0", "65536", "-1"])
def test_a_number_outside_the_tcp_ports_is_refused(text):
    with pytest.raises(argparse.ArgumentTypeError, match=rf"^{text} is not a TCP port \(1-65535\)$"):
        startup.port_number(text)


def test_a_port_someone_listens_on_gives_the_reason_and_a_free_one_none():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        error = startup.bind_error(port)
        assert isinstance(error, OSError) and error.errno == errno.EADDRINUSE
    # Closed, the same port is free again for the server to bind.
    assert startup.bind_error(port) is None


def test_a_port_left_in_time_wait_counts_as_free():
    """A server stopped a moment ago leaves its connections in TIME_WAIT; the
    next start binds with SO_REUSEADDR, so the check must not refuse the port."""
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)) as client:
            accepted, _ = server.accept()
            accepted.close()  # the server's side closes first: its end stays in TIME_WAIT
            client.recv(1)
    assert startup.bind_error(port) is None


def test_the_log_tail_is_the_last_lines_under_the_path(tmp_path):
    log = tmp_path / "server.log"
    log.write_text("".join(f"line {n}\n" for n in range(1, 41)))
    assert startup.log_tail(log, 3) == f"last lines of {log}:\nline 38\nline 39\nline 40"


def test_a_log_that_is_missing_or_unreadable_is_said_so(tmp_path):
    assert startup.log_tail(tmp_path / "none.log", 5) == f"({tmp_path / 'none.log'} does not exist)"
    assert startup.log_tail(tmp_path, 5) == f"({tmp_path} could not be read)"  # a folder: not a file to read
