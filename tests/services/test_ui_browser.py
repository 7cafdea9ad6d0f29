"""The MLflow UI in a real browser: `mnist-ui` serving a store
that holds a real run, opened in headless Chromium through selenium, at the
address `mnist-ui` prints and at the one the run printed."""

from urllib.parse import urlsplit

import pytest
from helpers import TempStore, ui_browser
from mlflow import MlflowClient
from PIL import Image

from mnist_runner.services import ui

pytestmark = pytest.mark.browser

RUN_NAME = "ui-e2e-digits"
EPOCHS = 3


@pytest.fixture(scope="module")
def served_store(tmp_path_factory):
    """A real 3-epoch run on the digits in a temporary store, served by the UI;
    yields (store uri, the URL the UI printed, what the run printed). The
    server stops at the end."""
    ui_browser.require_browser()
    store = TempStore(tmp_path_factory.mktemp("ui-store"))
    printed = ui_browser.train(
        store, "data=digits", f"trainer.epochs={EPOCHS}", f"tracking.run_name={RUN_NAME}", "tracking.log_model=false"
    )
    with ui_browser.ui_server(store.uri, store.root / "ui.log", experiment="digits") as url:
        yield store.uri, url, printed


@pytest.fixture
def browser():
    with ui_browser.chromium() as driver:
        yield driver


def test_the_printed_url_is_the_chart_view_of_the_experiment(served_store):
    uri, url, _ = served_store
    experiment = MlflowClient(tracking_uri=uri).get_experiment_by_name("digits")
    assert url == ui.chart_url(experiment.experiment_id, urlsplit(url).port)


def test_the_page_shows_the_run_and_its_val_accuracy_per_epoch(served_store, browser, tmp_path):
    from selenium.webdriver.common.by import By

    _, url, _ = served_store

    card = ui_browser.show_runs(browser, url, [RUN_NAME], chart="val_accuracy")

    assert "compareRunsMode=CHART" in browser.current_url
    # One point per epoch on the run's line.
    assert len(card.find_elements(By.CSS_SELECTOR, "svg.main-svg .scatterlayer path.point")) == EPOCHS
    shot = ui_browser.screenshot(browser, tmp_path / "mlflow_ui.png")
    viewport = browser.execute_script(
        "return [window.innerWidth, window.innerHeight].map(v => Math.round(v * window.devicePixelRatio))"
    )
    with Image.open(shot) as image:
        assert image.format == "PNG"
        assert list(image.size) == viewport
        assert viewport[0] == ui_browser.WINDOW[0]
        # A rendered page, not a blank or single-colour frame.
        assert len(image.convert("RGB").getcolors(maxcolors=1 << 20)) > 100


def test_the_link_the_run_printed_opens_its_charts(served_store, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    _, url, printed = served_store
    browser.get(ui_browser.printed_link(printed, f"http://127.0.0.1:{urlsplit(url).port}/", ui_browser.RUN_LINK_LINE))
    wait = WebDriverWait(browser, ui_browser.PAGE_TIMEOUT_S)

    # No click: the run's page opens on its tab of charts.
    section = wait.until(lambda d: ui_browser.chart_section(d, "Model metrics"))
    assert "/model-metrics" in browser.current_url
    # The per-epoch charts follow the per-class test accuracies (a section of
    # their own); cards out of view are not drawn, so scroll to them as a reader would.
    browser.execute_script("arguments[0].scrollIntoView()", section)
    card = wait.until(lambda d: ui_browser.drawn_chart(d, "accuracy", [RUN_NAME]))
    assert len(card.find_elements(By.CSS_SELECTOR, "svg.main-svg .scatterlayer path.point")) == EPOCHS
