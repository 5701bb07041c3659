"""The page at `/` of `xlm-hf serve`, in a real headless browser: Debian's chromium driven by Selenium through Debian's
chromium-driver (no browser download). `.ci/run` installs both; elsewhere `apt-get install chromium chromium-driver`.

With XLM_HF_SCREENSHOT=path the page is saved there once translated (docs/serve_page.png is made so).
"""

import os
import shutil

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("selenium")
CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                                reason="needs Debian's chromium and chromium-driver: apt-get install chromium "
                                "chromium-driver")

from serve_helpers import TEXTS, Server, model_dir  # noqa: E402,F401  (model_dir: a fixture)

WAIT_SECONDS = 60


@pytest.fixture(scope="module")
def server(model_dir, tmp_path_factory):
    with Server(model_dir, "--max-chars", "100", log=tmp_path_factory.mktemp("page") / "server.log") as running:
        yield running


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1000,760"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def wait_for(browser, condition, message):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, WAIT_SECONDS).until(lambda d: condition(d), message=message)


def test_the_page_translates_with_languages_from_info(server, browser, model_dir):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    from xlm_hf import translate

    browser.get(server.url + "/")
    wait_for(browser, lambda d: d.find_element(By.ID, "translate").is_enabled(), "the page never read /info")
    source = Select(browser.find_element(By.ID, "src"))
    assert [o.text for o in source.options] == ["en", "fr", "de"]
    source.select_by_value("en")
    assert [o.text for o in Select(browser.find_element(By.ID, "tgt")).options] == ["fr", "de"]
    Select(browser.find_element(By.ID, "tgt")).select_by_value("fr")
    beams = browser.find_element(By.ID, "beams")
    beams.clear()
    beams.send_keys("1")
    browser.find_element(By.ID, "source").send_keys("\n".join(TEXTS["en"][:3]))
    browser.find_element(By.ID, "attention").click()
    browser.find_element(By.ID, "translate").click()

    expected = translate(TEXTS["en"][:3], str(model_dir), src_lang="en", tgt_lang="fr", num_beams=1)
    wait_for(browser, lambda d: d.find_element(By.ID, "output").text.strip(), "no translation appeared")
    assert browser.find_element(By.ID, "output").text.split("\n") == expected
    wait_for(browser, lambda d: d.execute_script("const i = document.getElementById('heatmap');"
                                                 "return !i.hidden && i.complete && i.naturalWidth > 0;"),
             "the attention heatmap did not load")
    if os.environ.get("XLM_HF_SCREENSHOT"):
        browser.save_screenshot(os.environ["XLM_HF_SCREENSHOT"])


def test_the_page_shows_the_servers_error(server, browser):
    from selenium.webdriver.common.by import By

    browser.get(server.url + "/")
    wait_for(browser, lambda d: d.find_element(By.ID, "translate").is_enabled(), "the page never read /info")
    browser.find_element(By.ID, "source").send_keys("x" * 101)
    browser.find_element(By.ID, "translate").click()
    wait_for(browser, lambda d: d.find_element(By.ID, "error").text, "no error appeared")
    assert "max_chars=100" in browser.find_element(By.ID, "error").text
