"""The MLflow UI (``mnist-ui``, ``make ui``) and the tracking server (``make
server``: MLflow and its PostgreSQL) listen on 127.0.0.1 only, as their docs
say: checked on the sockets the kernel lists, not on the command line."""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil
import pytest
from helpers import TempStore, ui_browser
from test_tracking_server import free_ports, require_postgres

LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp


def proc_address(field: str) -> tuple[str, int]:
    """``0100007F:1F90`` (or its 128-bit IPv6 form) -> ('127.0.0.1', 8080)."""
    address, port = field.split(":")
    raw = bytes.fromhex(address)
    # The kernel prints each 32-bit word in host (little-endian) order.
    raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(raw)), int(port, 16)


def listening_addresses(port: int) -> set[str]:
    """Every address something listens on at TCP ``port``, IPv4 and IPv6."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            next(lines)
            for line in lines:
                fields = line.split()
                address, local_port = proc_address(fields[1])
                if fields[3] == LISTEN and local_port == port:
                    found.add(address)
    return found


def listening_sockets(pid: int) -> set[tuple[str, int]]:
    """(address, port) of every listening socket of a process and its children."""
    process = psutil.Process(pid)
    sockets = set()
    for member in [process, *process.children(recursive=True)]:
        try:
            connections = member.net_connections(kind="inet")
        except psutil.NoSuchProcess:
            continue
        sockets |= {(c.laddr.ip, c.laddr.port) for c in connections if c.status == psutil.CONN_LISTEN}
    return sockets


def test_the_proc_net_parser():
    assert proc_address("0100007F:1F90") == ("127.0.0.1", 8080)
    assert proc_address("00000000:0016") == ("0.0.0.0", 22)
    assert proc_address("00000000000000000000000000000000:0050") == ("::", 80)
    assert proc_address("00000000000000000000000001000000:0050") == ("::1", 80)


@pytest.mark.slow  # starts `mlflow server`
def test_the_ui_listens_on_localhost_only(tmp_path):
    store = TempStore(tmp_path)
    port = ui_browser.free_port()
    log_path = tmp_path / "ui.log"
    command = [sys.executable, "-m", "mnist_runner.services.ui", "--uri", store.uri, "--port", str(port)]
    with open(log_path, "w") as log:
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = ui_browser.wait_for_ui(server, port, log_path)
        assert url.startswith(f"http://127.0.0.1:{port}/")
        assert listening_addresses(port) == {"127.0.0.1"}
        sockets = listening_sockets(server.pid)
        assert ("127.0.0.1", port) in sockets
        assert {address for address, _ in sockets} == {"127.0.0.1"}, sockets
    finally:
        ui_browser.stop_group(server)


@pytest.mark.server
@pytest.mark.e2e
def test_the_tracking_server_and_its_database_listen_on_localhost_only():
    from mnist_runner.services import tracking_server
    from mnist_runner.services.tracking_server import ServerLayout

    require_postgres()
    # PostgreSQL's own user must be able to enter it when this runs as root.
    root = Path(tempfile.mkdtemp(prefix="mnist-listen-"))
    root.chmod(0o711)
    port, db_port = free_ports(2)
    paths = ServerLayout(root / "server", port=port, db_port=db_port)
    try:
        tracking_server.start(paths)
        assert listening_addresses(port) == {"127.0.0.1"}
        assert listening_addresses(db_port) == {"127.0.0.1"}
        mlflow_sockets = listening_sockets(tracking_server.mlflow_pid(paths))
        assert ("127.0.0.1", port) in mlflow_sockets
        assert {address for address, _ in mlflow_sockets} == {"127.0.0.1"}, mlflow_sockets
        postmaster = int((paths.data_dir / "postmaster.pid").read_text().split()[0])
        postgres_sockets = listening_sockets(postmaster)
        assert ("127.0.0.1", db_port) in postgres_sockets
        assert {address for address, _ in postgres_sockets} == {"127.0.0.1"}, postgres_sockets
    finally:
        tracking_server.stop(paths)
        shutil.rmtree(root, ignore_errors=True)
    assert not os.path.exists(root)
