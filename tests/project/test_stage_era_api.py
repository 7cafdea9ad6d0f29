"""No stage-era model registry API in the code or the docs: no stage
transitions, no ``get_latest_versions``, no ``models:/<name>/latest`` URIs
(docs/using-models.md: aliases such as ``@champion`` replace the stages);
and the pattern that looks for them catches each of them."""

import re

from mnist_runner.paths import PROJECT_ROOT

STAGE_ERA = re.compile(r"transition_model_version_stage|get_latest_versions|models:/[^\s\"'`@)]+/latest")


def test_no_stage_era_registry_api_in_the_code_or_docs():
    files = [
        *(PROJECT_ROOT / "src").rglob("*.py"),
        PROJECT_ROOT / "predict.py",
        PROJECT_ROOT / "run.py",
        PROJECT_ROOT / "Makefile",
        PROJECT_ROOT / "README.md",
        *(PROJECT_ROOT / "docs").glob("*.md"),
    ]
    found = [
        f"{path.relative_to(PROJECT_ROOT)}: {m.group(0)}"
        for path in files
        for m in STAGE_ERA.finditer(path.read_text())
    ]
    assert not found


def test_the_stage_era_pattern_catches_what_it_should():
    for text in (
        "models:/mnist-classifier/latest",
        "client.get_latest_versions(name)",
        "transition_model_version_stage(",
    ):
        assert STAGE_ERA.search(text)
    assert not STAGE_ERA.search("models:/mnist-classifier@champion")
