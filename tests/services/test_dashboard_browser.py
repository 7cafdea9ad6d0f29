"""``make dashboard`` in a real browser: the dashboard served on a study
database, its study page opened in headless Chromium through selenium."""

import optuna
import pytest
from helpers import dashboard_browser, ui_browser
from PIL import Image

pytestmark = pytest.mark.browser

TRIALS = 8


@pytest.fixture(scope="module")
def served_study(tmp_path_factory):
    """A study of 8 trials (no training: a known function of two params),
    served; yields the study URL the dashboard printed."""
    ui_browser.require_browser()
    root = tmp_path_factory.mktemp("dashboard")
    storage = f"sqlite:///{root / 'optuna.db'}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=storage, study_name="dense_search", direction="maximize")

    def objective(trial):
        rate = trial.suggest_float("trainer.learning_rate", 1e-4, 1e-2, log=True)
        dropout = trial.suggest_float("model.dropout", 0.0, 0.5)
        return 0.97 - abs(rate - 1e-3) - 0.01 * dropout

    study.optimize(objective, n_trials=TRIALS)
    with dashboard_browser.dashboard_server(storage, root / "dashboard.log") as studies:
        yield studies


@pytest.fixture
def browser():
    with ui_browser.chromium() as driver:
        yield driver


def test_the_study_page_shows_every_trial(served_study, browser, tmp_path):
    url = served_study["dense_search"]
    assert url.startswith("http://127.0.0.1:") and url.endswith("/dashboard/studies/1")
    text = dashboard_browser.show_study(browser, url, TRIALS)
    from selenium.webdriver.common.by import By

    assert len(browser.find_elements(By.CSS_SELECTOR, dashboard_browser.HISTORY_POINTS)) == TRIALS
    assert "dense_search" in text and "Hyperparameter Importance" in text
    assert "trainer.learning_rate" in text and "model.dropout" in text
    shot = ui_browser.screenshot(browser, tmp_path / "dashboard.png")
    with Image.open(shot) as image:
        assert image.format == "PNG" and image.size[0] == ui_browser.WINDOW[0]
        assert len(image.convert("RGB").getcolors(maxcolors=1 << 20)) > 100  # a rendered page
