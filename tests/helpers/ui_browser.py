"""The MLflow UI served by ``mnist-ui``, driven in headless Chromium.

Used by ``test_ui_browser.py`` and ``test_sweep_link_browser.py``, and run
as a script it makes the README's screenshot from a small real sweep, at the
link the sweep printed:

    .venv/bin/python tests/helpers/ui_browser.py docs/mlflow_ui.png
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit

if __package__ in (None, ""):  # run as a script (a make target): tests/ holds the helpers package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from helpers import TempStore, skip_or_fail  # noqa: E402

# Debian's packages (`make install-e2e`); selenium then needs no driver download.
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
WINDOW = (1400, 900)
# Tall enough for two rows of charts: the six accuracy charts of the README.
README_WINDOW = (1400, 1200)
# --no-sandbox: Chromium refuses to start as root (containers, CI) without it.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# The UI server takes ~9 s to answer on an idle machine, far longer on a busy one.
SERVER_START_S = 180
PAGE_TIMEOUT_S = 120
URL_LINE = re.compile(r"(http://127\.0\.0\.1:\d+/\S*)")
# What the runner prints before an address in the UI: at the end of a sweep
# (sweeps/links.py), and of a single run (pipeline/experiment.py).
SWEEP_LINK_LINE = "the sweep's runs side by side in the MLflow UI"
RUN_LINK_LINE = "open it:"


def missing_browser() -> str | None:
    """Why the browser cannot be driven here, or None."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not path.exists():
            return f"{path} not found"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed"
    return None


def require_browser() -> None:
    """Skip the calling test when the browser is missing; fail instead where
    MNIST_RUNNER_REQUIRE_E2E=1 (CI), so a broken set-up cannot pass as skipped."""
    reason = missing_browser()
    if reason is not None:
        skip_or_fail(f"{reason}: `make install-e2e` installs Chromium, chromedriver and selenium")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def train(store: TempStore, *overrides: str, multirun: bool = False) -> str:
    """Real runs of ``python run.py`` into ``store`` (its own SQLite file,
    artifacts, Hydra and checkpoint dirs); returns what they printed."""
    done = store.run_py(*overrides, multirun=multirun, timeout=900, sweep_dir="hydra")
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(done.args)} failed:\n{(done.stdout + done.stderr)[-3000:]}")
    return done.stdout + done.stderr


def printed_link(printed: str, base: str, after: str = SWEEP_LINK_LINE) -> str:
    """The address printed after ``after`` (by default: a sweep's runs side by
    side), on the UI at ``base``: the runner names ``make ui``'s port, the
    tests serve on a free one."""
    parts = printed.split(after, 1)
    found = URL_LINE.search(parts[-1]) if len(parts) == 2 else None
    if found is None:
        raise RuntimeError(f"no link after {after!r} in:\n{printed[-3000:]}")
    return base + "#" + found.group(1).partition("#")[2]


@contextlib.contextmanager
def ui_server(uri: str, log_path: Path, port: int | None = None, experiment: str = "mnist") -> Iterator[str]:
    """``mnist-ui`` on ``uri``; yields the URL it printed once
    ``/health`` answers, and stops the server (all its processes) on exit."""
    port = port or free_port()
    command = [
        sys.executable,
        "-m",
        "mnist_runner.services.ui",
        "--uri",
        uri,
        "--port",
        str(port),
        "--experiment",
        experiment,
    ]
    with open(log_path, "w") as log:
        # Its own process group: the server starts uvicorn and a job runner beside itself.
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield wait_for_ui(server, port, log_path)
    finally:
        stop_group(server)


def wait_for_ui(server: subprocess.Popen, port: int, log_path: Path) -> str:
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if server.poll() is not None:  # died at start: nothing will ever listen
            raise RuntimeError(f"the UI exited with {server.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        time.sleep(0.5)
    else:
        raise RuntimeError(f"the UI did not answer /health within {SERVER_START_S} s:\n{log_path.read_text()[-3000:]}")
    found = URL_LINE.search(log_path.read_text())
    if found is None:
        raise RuntimeError(f"the UI printed no URL:\n{log_path.read_text()[-3000:]}")
    return found.group(1)


def stop_group(process: subprocess.Popen) -> None:
    """SIGTERM to the process's group, then SIGKILL if it lingers."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pass
    with contextlib.suppress(ProcessLookupError):  # children that outlived their parent
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


@contextlib.contextmanager
def chromium(window: tuple[int, int] = WINDOW) -> Iterator:
    """Headless Debian Chromium through its chromedriver, with a throwaway profile."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={window[0]},{window[1]}"]:
        options.add_argument(flag)
    try:
        driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
        try:
            yield driver
        finally:
            driver.quit()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def show_runs(
    driver,
    url: str,
    run_names: list[str],
    chart: str = "val_accuracy",
    chart_search: str | None = None,
    timeout: float = PAGE_TIMEOUT_S,
):
    """Open ``url`` and wait until every run is listed and the ``chart`` card
    draws their lines; returns that card. ``chart_search`` (default: the chart's
    name) goes into the UI's chart search box, which also brings the card into
    view: cards out of view are not rendered."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(driver, timeout)
    driver.get(url)
    search = wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, "input[placeholder='Search metric charts']")))
    close_assistant(driver)
    wait.until(lambda d: listed_runs(d, run_names))
    search.send_keys(chart_search or chart)
    return wait.until(lambda d: drawn_chart(d, chart, run_names))


def listed_runs(driver, run_names: list[str]) -> bool:
    """Whether the runs table shows every name; expands sweeps (parent runs) whose
    children are folded away."""
    from selenium.webdriver.common.by import By

    shown = {cell.text for cell in driver.find_elements(By.CSS_SELECTOR, ".ag-row a")}
    if set(run_names) <= shown:
        return True
    for expand in driver.find_elements(By.CSS_SELECTOR, ".ag-row button[data-component-id*='runnamecellrenderer']"):
        expand.click()
    return False


def shown_run_names(driver) -> set[str]:
    """The run names the runs table shows as it is, nothing expanded."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    try:
        return {cell.text for cell in driver.find_elements(By.CSS_SELECTOR, ".ag-row a")}
    except StaleElementReferenceException:  # re-rendered meanwhile
        return set()


def chart_titles(driver) -> list[str]:
    """The titles of the chart cards, in page order."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    try:
        cards = driver.find_elements(By.CSS_SELECTOR, "[data-testid=experiment-view-compare-runs-card] h4")
        return [title.text for title in cards]
    except StaleElementReferenceException:
        return []


def chart_section(driver, name: str):
    """The header of the chart section ``name`` (``Model metrics``), or False."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    headers = "[data-testid=experiment-view-compare-runs-section-header]"
    try:
        for header in driver.find_elements(By.CSS_SELECTOR, headers):
            if header.text.startswith(name):
                return header
    except StaleElementReferenceException:
        pass
    return False


def sweep_view(driver, run_names: list[str], chart: str = "overfit_gap"):
    """The first chart card once the page, as it opened (no click, nothing
    typed), lists every run of ``run_names`` and its first chart is ``chart``
    with their lines drawn; else False."""
    if not set(run_names) <= shown_run_names(driver):
        return False
    titles = chart_titles(driver)
    return drawn_chart(driver, chart, run_names) if titles[:1] == [chart] else False


def wait_for_sweep_view(driver, run_names: list[str], chart: str = "overfit_gap", timeout: float = PAGE_TIMEOUT_S):
    """``sweep_view``'s card once it is there; fails saying what the page
    showed instead (the runs listed, the charts' titles)."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout).until(lambda page: sweep_view(page, run_names, chart))
    except TimeoutException:
        raise AssertionError(
            f"after {timeout:.0f} s the page lists the runs {sorted(shown_run_names(driver))} (expected "
            f"{sorted(run_names)}) and shows the charts {chart_titles(driver)[:6]} (expected {chart!r} first, "
            "its lines drawn)"
        ) from None


def drawn_chart(driver, chart: str, run_names: list[str]):
    """The chart card titled ``chart`` once it has a plotted line and names every run."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    for card in driver.find_elements(By.CSS_SELECTOR, "[data-testid=experiment-view-compare-runs-card]"):
        try:
            if card.find_element(By.CSS_SELECTOR, "h4").text != chart:
                continue
            lines = [p.get_attribute("d") for p in card.find_elements(By.CSS_SELECTOR, "svg.main-svg path.js-line")]
            if any(lines) and all(name in card.text for name in run_names):
                return card
        except StaleElementReferenceException:  # re-rendered meanwhile: look again
            return False
    return False


def close_assistant(driver) -> None:
    """The chat panel MLflow opens on a first visit takes a third of the window."""
    from selenium.webdriver.common.by import By

    panel_close = "//*[text()='MLflow Assistant']/following::button[@aria-label='Close']"
    for button in driver.find_elements(By.XPATH, panel_close):
        if button.is_displayed():
            button.click()
            return


def screenshot(driver, path: Path) -> Path:
    driver.save_screenshot(str(path))
    return path


def main(argv: list[str]) -> int:
    """A small sweep (dropout 0, 0.3, 0.6 on the digits) in a temporary store,
    then the screenshot of the page at the link it printed."""
    if len(argv) != 1:
        print("usage: python tests/helpers/ui_browser.py OUT.png", file=sys.stderr)
        return 2
    if reason := missing_browser():
        print(f"cannot drive the browser: {reason} (make install-e2e)", file=sys.stderr)
        return 2
    out = Path(argv[0]).resolve()
    dropouts = ["0.0", "0.3", "0.6"]
    with tempfile.TemporaryDirectory(prefix="ui-screenshot-") as tmp:
        store = TempStore(Path(tmp))
        printed = train(
            store,
            "data=digits",
            "trainer.epochs=10",
            f"model.dropout={','.join(dropouts)}",
            "tracking.run_name=dropout-${model.dropout}",
            "tracking.log_model=false",
            multirun=True,
        )
        with ui_server(store.uri, store.root / "ui.log", experiment="digits") as url, chromium(README_WINDOW) as driver:
            link = printed_link(printed, f"http://127.0.0.1:{urlsplit(url).port}/")
            driver.get(link)
            wait_for_sweep_view(driver, [f"dropout-{dropout}" for dropout in dropouts])
            # The UI opens its chat panel by itself on a browser's first visit only; closed, it stays closed.
            close_assistant(driver)
            time.sleep(1)  # let the charts finish their transition into the wider page
            screenshot(driver, out)
    print(f"{out} ({out.stat().st_size // 1024} KB) from {link}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
