"""optuna-dashboard served by ``python -m mnist_runner.services.dashboard``
(``make dashboard``), driven in headless Chromium.

Used by ``test_dashboard_browser.py``, and run as a script it makes the
documentation's screenshot from a small real search:

    .venv/bin/python tests/helpers/dashboard_browser.py docs/optuna_dashboard.png
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Iterator

if __package__ in (None, ""):  # run as a script (a make target): tests/ holds the helpers package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from helpers import TempStore, ui_browser  # noqa: E402

SERVER_START_S = 60
STUDY_LINE = re.compile(r"study '(?P<name>[^']+)' \((?P<trials>\d+) trials\): (?P<url>http://127\.0\.0\.1:\d+/\S+)")
# The dashboard's study page: the history plot has one point per finished trial.
HISTORY_POINTS = "#plot-history .scatterlayer .point"


@contextlib.contextmanager
def dashboard_server(storage: str, log_path: Path, port: int | None = None) -> Iterator[dict[str, str]]:
    """``python -m mnist_runner.services.dashboard`` on ``storage``; yields
    {study name: the study URL it printed} once it answers, and stops it on exit."""
    port = port or ui_browser.free_port()
    command = [sys.executable, "-m", "mnist_runner.services.dashboard", "--storage", storage, "--port", str(port)]
    with open(log_path, "w") as log:
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield wait_for_dashboard(server, port, log_path)
    finally:
        ui_browser.stop_group(server)


def wait_for_dashboard(server: subprocess.Popen, port: int, log_path: Path) -> dict[str, str]:
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the dashboard exited with {server.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        time.sleep(0.3)
    else:
        raise RuntimeError(f"the dashboard did not answer within {SERVER_START_S} s:\n{log_path.read_text()[-3000:]}")
    return {found["name"]: found["url"] for found in STUDY_LINE.finditer(log_path.read_text())}


def show_study(driver, url: str, trials: int, timeout: float = ui_browser.PAGE_TIMEOUT_S) -> str:
    """Open a study's page and wait until its history plot shows at least
    ``trials`` points; returns the page's text."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    WebDriverWait(driver, timeout).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, HISTORY_POINTS)) >= trials)
    return driver.find_element(By.TAG_NAME, "body").text


def main(argv: list[str]) -> int:
    """A 12-trial search of the dense network on the digits in a temporary
    store, then the screenshot of its study page."""
    if len(argv) != 1:
        print("usage: python tests/helpers/dashboard_browser.py OUT.png", file=sys.stderr)
        return 2
    if reason := ui_browser.missing_browser():
        print(f"cannot drive the browser: {reason} (make install-e2e)", file=sys.stderr)
        return 2
    out = Path(argv[0]).resolve()
    trials = 12
    with tempfile.TemporaryDirectory(prefix="dashboard-screenshot-") as tmp:
        store = TempStore(Path(tmp))
        storage = f"sqlite:///{store.root / 'optuna.db'}"
        done = store.run_py(
            "hparams_search=dense_search",
            f"hydra.sweeper.n_trials={trials}",
            f"hydra.sweeper.storage={storage}",
            "data=digits",
            "data.train_samples=null",
            "trainer.epochs=8",
            timeout=1800,
        )
        if done.returncode != 0:
            print((done.stdout + done.stderr)[-3000:], file=sys.stderr)
            return 1
        with dashboard_server(storage, store.root / "dashboard.log") as studies:
            url = studies["dense_search"]
            with ui_browser.chromium(ui_browser.README_WINDOW) as driver:
                show_study(driver, url, completed(storage))
                time.sleep(1)  # let the plots finish their transitions
                ui_browser.screenshot(driver, out)
    print(f"{out} ({out.stat().st_size // 1024} KB) from {url}")
    return 0


def completed(storage: str) -> int:
    """How many of the study's trials completed."""
    import optuna

    study = optuna.load_study(study_name="dense_search", storage=storage)
    return len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
