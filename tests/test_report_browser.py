"""report.html in a real headless Chromium: no console errors, tables and figures render.

Needs the Debian packages ``chromium`` and ``chromium-driver`` (``apt-get install -y chromium
chromium-driver``); skipped with a reason when either binary is missing. Set
FAEREC_SCREENSHOT_DIR to keep the full-page screenshot somewhere other than tmp_path.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from report_fixtures import make_study_store

from faerec.report import build_report

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
XSS = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    store = make_study_store(
        tmp_path_factory.mktemp("studies"),
        "browser",
        methods=("backbone", "faerec", "faerec-no-gate"),
        searched=("faerec",),
        n_trials=6,
        description=f"Browser check {XSS}",
        extra_best_params={"faerec": {"note": XSS}},
        real=True,
    )
    out = tmp_path_factory.mktemp("reports") / "browser"
    build_report([store], out, formats=["html"])
    return out / "report.html"


@pytest.fixture(scope="module")
def driver() -> Iterator[object]:
    if not CHROMIUM or not CHROMEDRIVER:
        pytest.skip("headless Chromium not installed (apt-get install -y chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,1000",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield browser
    finally:
        browser.quit()


def _open(driver: object, page: Path) -> None:
    driver.get(page.as_uri())  # type: ignore[attr-defined]


def test_page_loads_without_console_errors(driver: object, page: Path) -> None:
    _open(driver, page)
    logs = driver.get_log("browser")  # type: ignore[attr-defined]
    severe = [entry for entry in logs if entry.get("level") == "SEVERE"]
    assert severe == []


def test_main_table_and_every_figure_render(driver: object, page: Path) -> None:
    from selenium.webdriver.common.by import By

    _open(driver, page)
    table = driver.find_element(By.CSS_SELECTOR, 'table.results[data-kind="main"]')  # type: ignore[attr-defined]
    assert table.is_displayed()
    rows = table.find_elements(By.CSS_SELECTOR, "tbody tr")
    assert len(rows) == 4  # backbone, FAERec, one ablation, the improvement row
    images = driver.find_elements(By.CSS_SELECTOR, "figure img")  # type: ignore[attr-defined]
    assert len(images) >= 4
    for image in images:
        width = driver.execute_script(  # type: ignore[attr-defined]
            "arguments[0].scrollIntoView(); return arguments[0].complete ? "
            "arguments[0].naturalWidth : 0;",
            image,
        )
        assert width > 0, image.get_attribute("alt")


def test_headline_table_is_on_the_first_screen(driver: object, page: Path) -> None:
    from selenium.webdriver.common.by import By

    _open(driver, page)
    table = driver.find_element(By.CSS_SELECTOR, 'table[data-kind="headline"]')  # type: ignore[attr-defined]
    top = driver.execute_script("return arguments[0].getBoundingClientRect().top", table)  # type: ignore[attr-defined]
    height = driver.execute_script("return window.innerHeight")  # type: ignore[attr-defined]
    assert table.is_displayed() and 0 <= top < height


def test_data_strings_show_as_text_and_run_nothing(driver: object, page: Path) -> None:
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By

    _open(driver, page)
    lead = driver.find_element(By.CSS_SELECTOR, "p.lead").text  # type: ignore[attr-defined]
    assert lead == f"Browser check {XSS}"
    cells = [c.text for c in driver.find_elements(By.CSS_SELECTOR, "table td")]  # type: ignore[attr-defined]
    assert XSS in cells
    assert driver.execute_script("return document.scripts.length") == 0  # type: ignore[attr-defined]
    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert.text  # type: ignore[attr-defined]  # noqa: B018


def test_full_page_screenshot(driver: object, page: Path, tmp_path: Path) -> None:
    _open(driver, page)
    height = driver.execute_script("return document.documentElement.scrollHeight")  # type: ignore[attr-defined]
    driver.set_window_size(1280, min(int(height) + 40, 16000))  # type: ignore[attr-defined]
    target_dir = Path(os.environ.get("FAEREC_SCREENSHOT_DIR") or tmp_path)
    target_dir.mkdir(parents=True, exist_ok=True)
    shot = target_dir / "report.png"
    assert driver.save_screenshot(str(shot))  # type: ignore[attr-defined]
    assert shot.stat().st_size > 10_000
