"""The link printed at the end of a sweep, opened in headless Chromium on the
MLflow UI as a user would: no click, nothing typed. It lists the sweep's runs
(and no other) and opens on their per-epoch charts, ``overfit_gap`` first;
the compare link shows them side by side. The runs are logged directly
(nothing trained); the sweep's end is the runner's own."""

import logging
import os
from urllib.parse import urlsplit

import pytest
from helpers import TempStore, ui_browser

from mnist_runner import redaction
from mnist_runner.sweeps import links, parent
from mnist_runner.tracking import store as tracking_store

pytestmark = pytest.mark.browser

DROPOUTS = ("0.0", "0.3", "0.6")
CHILDREN = [f"dropout-{dropout}" for dropout in DROPOUTS]
EPOCHS = 3
PARENT = "sweep-test"


class Printed(logging.Handler):
    """What the sweep's end logs."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage())


@pytest.fixture(scope="module")
def served_sweep(tmp_path_factory):
    """A sweep's parent with three children, closed by the sweep's own end
    (report, the parent's metrics, the printed link), and one run outside the
    sweep, in a temporary store served by the UI; yields (UI base URL,
    experiment id, child ids, what the sweep's end printed)."""
    ui_browser.require_browser()
    store = TempStore(tmp_path_factory.mktemp("sweep-link"))
    tracking_store.ensure_sqlite_store(store.db, "tracking.uri")
    client = store.client()
    experiment = client.create_experiment("mnist", artifact_location=store.artifacts.as_uri())
    sweep = client.create_run(experiment, run_name=PARENT, tags={"sweep_role": "parent", "sweep_id": "test"})
    children = []
    for index, name in enumerate(CHILDREN):
        run = client.create_run(experiment, run_name=name, tags={"mlflow.parentRunId": sweep.info.run_id})
        run_id = run.info.run_id
        client.log_param(run_id, "model.dropout", DROPOUTS[index])
        for epoch in range(1, EPOCHS + 1):
            client.log_metric(run_id, "accuracy", 0.90 + 0.02 * epoch, step=epoch)
            client.log_metric(run_id, "val_accuracy", 0.89 + 0.01 * epoch + 0.002 * index, step=epoch)
            client.log_metric(run_id, "overfit_gap", 0.01 + 0.01 * epoch - 0.004 * index, step=epoch)
        for metric, value in {"test_accuracy": 0.92, "final_overfit_gap": 0.04 - 0.004 * index}.items():
            client.log_metric(run_id, metric, value)
        client.set_terminated(run_id, "FINISHED")
        children.append(run_id)
    other = client.create_run(experiment, run_name="not-in-the-sweep")
    client.log_metric(other.info.run_id, "overfit_gap", 0.5, step=1)
    client.set_terminated(other.info.run_id, "FINISHED")
    info = parent.SweepInfo(
        "test", sweep.info.run_id, experiment, store.uri, ["model.dropout"], str(store.root / "sweep"), os.getpid()
    )
    printed = Printed()
    logger = logging.getLogger("mnist_runner.sweeps.collect")
    logger.addHandler(printed)
    level, factory = logger.level, logging.getLogRecordFactory()
    logger.setLevel(logging.INFO)
    redaction.redact_logs()  # as run.py logs: credentials masked
    try:
        # As at the end of a sweep: the report, the parent's own metrics (bar charts), the link.
        parent.finish_parent_run(info, store.root / "sweep" / "report")
    finally:
        logger.removeHandler(printed)
        logger.setLevel(level)
        logging.setLogRecordFactory(factory)
    with ui_browser.ui_server(store.uri, store.root / "ui.log") as url:
        base = f"http://127.0.0.1:{urlsplit(url).port}/"
        yield base, experiment, children, "\n".join(printed.lines)


@pytest.fixture
def browser():
    with ui_browser.chromium() as driver:
        yield driver


def test_the_printed_link_opens_the_childrens_gap_per_epoch(served_sweep, browser):
    from selenium.webdriver.common.by import By

    base, _, _, printed = served_sweep
    browser.get(ui_browser.printed_link(printed, base))

    # Nothing clicked or typed from here on: what the page shows as it opens.
    card = ui_browser.wait_for_sweep_view(browser, CHILDREN)
    # The children as rows of their own; not their parent, nor a run outside the sweep.
    assert ui_browser.shown_run_names(browser) == set(CHILDREN)
    titles = ui_browser.chart_titles(browser)
    assert titles[:3] == ["overfit_gap", "val_accuracy", "accuracy"]
    # The parent's own metrics make no charts.
    assert not {"jobs_finished", "jobs_failed", "best_test_accuracy"} & set(titles)
    # The gap per epoch: a line per child, a point per child and epoch, in view.
    # (Plotly draws each trace's line twice; the children's lines differ.)
    lines = {path.get_attribute("d") for path in card.find_elements(By.CSS_SELECTOR, "svg.main-svg path.js-line")}
    assert len(lines - {None, ""}) == len(CHILDREN)
    assert len(card.find_elements(By.CSS_SELECTOR, "svg.main-svg .scatterlayer path.point")) == len(CHILDREN) * EPOCHS
    top = browser.execute_script("return arguments[0].getBoundingClientRect().top", card)
    assert 0 <= top < browser.execute_script("return window.innerHeight")


def test_the_compare_link_shows_them_side_by_side(served_sweep, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    base, experiment, children, _ = served_sweep
    browser.get(links.compare_runs_url(base, experiment, children))

    def page_once_drawn(driver):
        text = driver.find_element(By.TAG_NAME, "body").text
        ready = f"Comparing {len(children)} Runs" in text and "Parallel Coordinates" in text
        return text if ready and all(name in text for name in CHILDREN) else False

    text = WebDriverWait(browser, ui_browser.PAGE_TIMEOUT_S).until(page_once_drawn)
    assert "not-in-the-sweep" not in text
