"""The OPE report's HTML in a real headless browser: it renders, every plot shows, no console errors.

Needs selenium (a Python package) and Chromium with its driver (Debian: `apt-get install chromium
chromium-driver`); skipped with the reason when either is missing. Run with `pytest -m browser`.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.optional import missing_extra

pytestmark = pytest.mark.browser

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
DRIVERS = ("chromedriver",)


def _which(names: tuple[str, ...], env: str) -> str | None:
    if os.environ.get(env):
        return os.environ[env]
    return next((path for path in map(shutil.which, names) if path), None)


def _missing(reason: str) -> None:
    """Skip, or fail where CI requires the 'browser' extra (`tests.optional`)."""
    missing_extra("browser", reason)


@pytest.fixture(scope="module")
def browser():
    try:
        from selenium import webdriver
    except ImportError:
        _missing("selenium is not installed (pip install -e '.[browser]')")
    binary = _which(BROWSERS, "CHROMIUM_BINARY")
    driver_path = _which(DRIVERS, "CHROMEDRIVER")
    if binary is None or driver_path is None:
        _missing("Chromium or chromedriver not found (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _session_log(path: Path, n_sessions: int = 200, length: int = 5) -> int:
    rng = np.random.default_rng(0)
    n = n_sessions * length
    item = rng.integers(0, 4, size=n)
    pd.DataFrame(
        {
            "user_id": np.repeat(np.arange(n_sessions), length),
            "session_id": np.repeat(np.arange(n_sessions), length),
            "item_id": item,
            "timestamp": np.arange(n, dtype=float),
            "click": rng.binomial(1, np.array([0.1, 0.3, 0.5, 0.7])[item]).astype(float),
            "propensity": np.full(n, 0.25),
        }
    ).to_csv(path, index=False)
    return n


def _check_page(driver, html_path: Path, sections: list[str]) -> None:
    from selenium.webdriver.common.by import By

    driver.get(html_path.resolve().as_uri())
    assert driver.title.startswith("Off-policy evaluation")
    headings = [h.text for h in driver.find_elements(By.CSS_SELECTOR, "h1, h2, h3")]
    for section in sections:
        assert any(h.startswith(section) for h in headings), (section, headings)
    cells = [td.text for td in driver.find_elements(By.TAG_NAME, "td")]
    assert "seq-Switch-DR" in cells and "FQE" in cells and "CVaR 10%" in cells
    images = driver.find_elements(By.TAG_NAME, "img")
    assert images
    for img in images:
        loaded = driver.execute_script(
            "return arguments[0].complete && arguments[0].naturalWidth > 0 && arguments[0].naturalHeight > 0",
            img,
        )
        assert loaded, f"image {img.get_attribute('alt')} did not load"
        assert img.size["width"] > 0 and img.size["height"] > 0  # laid out, not hidden
    severe = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    assert not severe, severe


def _saved_report(tmp_path: Path, policies: list[str]) -> Path:
    """`seqrec ope-report` of `policies` on `tmp_path/log.csv` (a quick run), saved; its HTML page."""
    from evaluation.cli import OPEReportOptions, build_ope_report

    report, _ = build_ope_report(
        OPEReportOptions(
            logs=tmp_path / "log.csv",
            policy=policies,
            out=tmp_path / "out",
            n_bootstrap=50,
            fqe_steps=20,
            horizon=5,
        )
    )
    report.save(tmp_path / "out")
    return tmp_path / "out" / "report.html"


def test_comparison_report_renders_in_a_browser(browser, tmp_path):
    n = _session_log(tmp_path / "log.csv")
    policies = []
    for name, probs in {"good": [0.1, 0.1, 0.1, 0.7], "bad": [0.7, 0.1, 0.1, 0.1]}.items():
        np.save(tmp_path / f"{name}.npy", np.tile(probs, (n, 1)))
        policies.append(str(tmp_path / f"{name}.npy"))
    _check_page(
        browser,
        _saved_report(tmp_path, policies),
        ["Off-policy evaluation of 2 candidates", "Ranking", "Candidate 1: good", "Candidate 2: bad",
         "Sequential estimators (per session)", "Risk: the distribution of the session return"],
    )  # fmt: skip
    assert len(browser.find_elements("tag name", "img")) == 2 + 2 * 4


def test_single_policy_report_renders_in_a_browser(browser, tmp_path):
    _session_log(tmp_path / "log.csv")
    _check_page(
        browser,
        _saved_report(tmp_path, ["uniform"]),
        [
            "Off-policy evaluation: uniform policy",
            "Sequential estimators (per session)",
            "Risk:",
            "Importance weights",
        ],
    )
