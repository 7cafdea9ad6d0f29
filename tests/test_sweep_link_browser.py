"""The link printed at the end of a sweep, opened in headless Chromium on the
MLflow UI: it lists the sweep's runs (and no other) with their charts, and
the compare link shows them side by side. The runs are logged directly
(nothing trained)."""

from urllib.parse import urlsplit

import pytest
import ui_browser
from helpers import TempStore

from mnist_runner.sweeps import links

pytestmark = pytest.mark.browser

CHILDREN = [f"{model}-seed{seed}" for model in ("dense", "cnn") for seed in (1, 2, 3)]


@pytest.fixture(scope="module")
def served_sweep(tmp_path_factory):
    """A sweep's parent with six children, and one run outside the sweep, in a
    temporary store served by the UI; yields (UI base URL, experiment id, parent id, child ids)."""
    ui_browser.require_browser()
    store = TempStore(tmp_path_factory.mktemp("sweep-link"))
    client = store.client()
    experiment = client.create_experiment("mnist", artifact_location=store.artifacts.as_uri())
    parent = client.create_run(experiment, run_name="sweep-test", tags={"sweep_role": "parent"})
    children = []
    for index, name in enumerate(CHILDREN):
        run = client.create_run(experiment, run_name=name, tags={"mlflow.parentRunId": parent.info.run_id})
        client.log_param(run.info.run_id, "model.name", name.split("-")[0])
        for epoch in (1, 2, 3):
            client.log_metric(run.info.run_id, "val_accuracy", 0.90 + 0.01 * epoch + 0.002 * index, step=epoch)
        client.set_terminated(run.info.run_id, "FINISHED")
        children.append(run.info.run_id)
    other = client.create_run(experiment, run_name="not-in-the-sweep")
    client.log_metric(other.info.run_id, "val_accuracy", 0.5, step=1)
    client.set_terminated(other.info.run_id, "FINISHED")
    client.set_terminated(parent.info.run_id, "FINISHED")
    with ui_browser.ui_server(store.uri, store.root / "ui.log") as url:
        base = f"http://127.0.0.1:{urlsplit(url).port}/"
        yield base, experiment, parent.info.run_id, children


@pytest.fixture
def browser():
    with ui_browser.chromium() as driver:
        yield driver


def test_the_chart_link_shows_the_sweeps_runs_only(served_sweep, browser):
    from selenium.webdriver.common.by import By

    base, experiment, parent_id, _ = served_sweep
    url = links.sweep_chart_url(base, experiment, parent_id)
    card = ui_browser.show_runs(browser, url, CHILDREN, chart="val_accuracy")
    assert "compareRunsMode=CHART" in browser.current_url
    listed = {cell.text for cell in browser.find_elements(By.CSS_SELECTOR, ".ag-row a")}
    assert set(CHILDREN) <= listed and "not-in-the-sweep" not in listed
    assert card.find_elements(By.CSS_SELECTOR, "svg.main-svg path.js-line")


def test_the_compare_link_shows_them_side_by_side(served_sweep, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    base, experiment, _, children = served_sweep
    browser.get(links.compare_runs_url(base, experiment, children))

    def page_once_drawn(driver):
        text = driver.find_element(By.TAG_NAME, "body").text
        ready = f"Comparing {len(children)} Runs" in text and "Parallel Coordinates" in text
        return text if ready and all(name in text for name in CHILDREN) else False

    text = WebDriverWait(browser, ui_browser.PAGE_TIMEOUT_S).until(page_once_drawn)
    assert "not-in-the-sweep" not in text
