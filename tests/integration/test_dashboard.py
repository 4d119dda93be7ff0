"""The dashboard (`/ui`) in headless Chromium (Debian's `chromium` with its `chromedriver`, driven by
Selenium) against the API of this tree on the local stack: sign in with a key, a wrong key
refused, a job submitted in the form with a file from disk and watched to 100 %, its preview
played, a queued job cancelled, a failed job's FFmpeg error, the API's validation message in the
form, files deleted, usage per day, and the pages at a phone's width.

Each step saves a screenshot under tests/artifacts/dashboard/ (git-ignored) to look at."""
# ruff: noqa: F811 (pytest fixtures imported from the REST suite are parameters here)

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from devstack.stack import StackInfo
from ffmpegjob_model.model import API_VERSION, KIND, PLURAL, TENANT_LABEL

# The stack's API process and helpers of the REST suite (fixtures are found by name).
from helpers import Receiver
from kubernetes import client
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select, WebDriverWait
from test_api_stack import Api, api_url, keys, tenant_name, upload, video, wait_vgf  # noqa: F401

pytestmark = [pytest.mark.stack, pytest.mark.browser]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "dashboard"
WAIT = 180.0
DESKTOP = (1280, 900)
PHONE = (390, 844)


def chromium() -> tuple[str, str]:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not browser or not driver:
        raise RuntimeError("Debian's chromium and chromium-driver are needed: `make setup` installs them")
    return browser, driver


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    path, driver_path = chromium()
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must not try to download a browser or driver
    opts = webdriver.ChromeOptions()
    opts.binary_location = path
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--window-size={DESKTOP[0]},{DESKTOP[1]}", "--autoplay-policy=no-user-gesture-required",
                "--lang=en-GB", "--force-prefers-reduced-motion"):
        opts.add_argument(arg)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    service = Service(executable_path=driver_path, log_output=str(ARTIFACTS / "chromedriver.log"))
    drv = webdriver.Chrome(options=opts, service=service)
    drv.set_page_load_timeout(60)
    try:
        yield drv
    finally:
        drv.quit()


def shot(drv: WebDriver, name: str, size: tuple[int, int] = DESKTOP) -> Path:
    """A full-page screenshot at `size` (a phone's is emulated: a window cannot be that narrow)."""
    mobile = size[0] < 600
    drv.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": size[0], "height": size[1], "deviceScaleFactor": 1, "mobile": mobile})
    height = drv.execute_script("return Math.max(document.body.scrollHeight, document.documentElement.scrollHeight)")
    drv.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": size[0], "height": min(max(int(height), size[1]), 4000), "deviceScaleFactor": 1, "mobile": mobile})
    drv.execute_script("window.scrollTo(0, 0)")
    out = ARTIFACTS / f"{name}.png"
    drv.save_screenshot(str(out))
    if mobile:  # the page must fit a phone's width: nothing to scroll sideways
        overflow = drv.execute_script("const e = document.documentElement; return e.scrollWidth - e.clientWidth")
        assert overflow <= 0, f"{name}: {overflow}px wider than the phone's screen"
    drv.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    return out


def wait_until(drv: WebDriver, cond: Any, timeout: float = 30.0, what: str = "") -> Any:
    try:
        # A part the page redraws between a find and a read is read again on the next poll.
        return WebDriverWait(drv, timeout, poll_frequency=0.2,
                             ignored_exceptions=(StaleElementReferenceException,)).until(cond)
    except TimeoutException:
        shot(drv, "failure-" + (what or "wait").replace(" ", "-"))
        raise AssertionError(f"timed out waiting for {what}: on {drv.current_url}") from None


def text_of(drv: WebDriver, css: str) -> str:
    return str(drv.find_element(By.CSS_SELECTOR, css).text)


def visible(drv: WebDriver, css: str) -> WebElement:
    return wait_until(drv, ec.visibility_of_element_located((By.CSS_SELECTOR, css)), what=css)


def sign_in(drv: WebDriver, url: str, key: str) -> None:
    drv.get(f"{url}/ui/login")
    field = visible(drv, "#api-key")
    field.clear()
    field.send_keys(key)
    drv.find_element(By.CSS_SELECTOR, "#login-form button[type=submit]").click()
    wait_until(drv, ec.url_contains("/ui/jobs"), what="the jobs page after signing in")


@pytest.fixture(scope="module")
def key(keys: Callable[..., str]) -> str:
    return keys(tenant_name("ui"))


@pytest.fixture(scope="module")
def rest(api_url: str, key: str) -> Api:
    return Api(api_url, key)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 s of 640x360 video with audio, a keyframe each second (so it splits into chunks): the
    job below reads it at its own rate (-re), so the page sees it run whatever the machine's speed."""
    out = tmp_path_factory.mktemp("ui") / "clip.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25:duration=12",
                    "-f", "lavfi", "-i", "sine=frequency=330:duration=12", "-c:v", "libx264", "-preset", "ultrafast",
                    "-g", "25", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(out)], check=True)
    return out


# ------------------------------------------------------------------------------------- tests
def test_pages_hold_no_data_and_a_wrong_key_is_refused(browser: WebDriver, api_url: str) -> None:
    # Without a key every page sends the browser to sign in; the pages themselves carry no data.
    browser.delete_all_cookies()
    browser.get(f"{api_url}/ui/jobs")
    browser.execute_script("sessionStorage.clear()")
    browser.get(f"{api_url}/ui/jobs")
    wait_until(browser, ec.url_contains("/ui/login"), what="the sign-in page")
    page = httpx.get(f"{api_url}/ui/jobs", timeout=10)
    assert page.status_code == 200 and "job-" not in page.text
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert httpx.get(f"{api_url}/ui/api/jobs", timeout=10).status_code == 400  # no key: nothing
    assert httpx.get(f"{api_url}/ui/api/jobs", headers={"Authorization": "Bearer nope"}, timeout=10).status_code == 401
    field = visible(browser, "#api-key")
    field.send_keys("not-a-key-" + uuid.uuid4().hex)
    field.submit()
    wait_until(browser, lambda d: "refused" in text_of(d, "#login-error"), what="the refusal")
    assert "401 Invalid API key" in text_of(browser, "#login-error")
    assert field.get_attribute("aria-invalid") == "true"
    assert browser.execute_script("return sessionStorage.getItem('kubeffmpeg.apiKey')") is None
    assert "/ui/login" in browser.current_url
    shot(browser, "01-login-wrong-key")
    shot(browser, "01-login-wrong-key-phone", PHONE)


def test_submit_in_the_form_watch_it_to_100_and_preview(browser: WebDriver, api_url: str, key: str,
                                                        clip: Path) -> None:
    sign_in(browser, api_url, key)
    browser.get(f"{api_url}/ui/submit")
    visible(browser, "#vgf-form")
    browser.find_element(By.CSS_SELECTOR, "#vgf-inputs .in-file").send_keys(str(clip))
    cmds = browser.find_element(By.ID, "vgf-commands")
    cmds.clear()
    cmds.send_keys("-re -i {{input}} -vf scale=320:-2 -c:v libx264 -preset ultrafast -c:a aac {{output.mp4}}")
    shot(browser, "02-submit-form")
    browser.find_element(By.CSS_SELECTOR, "#vgf-form button[type=submit]").click()
    wait_until(browser, ec.url_contains("/ui/jobs/job-"), timeout=60, what="the job page after submitting")
    job_id = browser.current_url.rsplit("/", 1)[1]

    # Progress on the page: seen between 0 and 100 while it runs, then 100 % and succeeded.
    seen: set[int] = set()
    deadline = time.monotonic() + WAIT
    running_shot = False
    while time.monotonic() < deadline:
        pct = int(text_of(browser, "#job-percent").rstrip(" %") or 0)
        seen.add(pct)
        status = text_of(browser, "#job-status")
        if status == "running" and 0 < pct < 100 and not running_shot:
            # Live: from the job's event stream where the API has one, else polled.
            assert text_of(browser, "#live-mode") in ("Live: server events.", "Live: refreshed every second.")
            shot(browser, "03-job-running")
            running_shot = True
        if status == "succeeded":
            break
        time.sleep(0.3)
    assert text_of(browser, "#job-status") == "succeeded", text_of(browser, "#main")
    assert text_of(browser, "#job-percent") == "100 %"
    assert browser.find_element(By.ID, "job-progress").get_attribute("value") == "100"
    assert any(0 < p < 100 for p in seen), f"no progress seen between 0 and 100: {sorted(seen)}"
    assert "step 1" in text_of(browser, "#steps").lower() and "-re -i {{input}}" in text_of(browser, "#steps")
    assert "Succeeded" in text_of(browser, "#timeline") or "Complete" in text_of(browser, "#timeline")

    # The preview: a <video> of the presigned result URL that the browser really loads.
    visible(browser, "#outputs-section")
    browser.find_element(By.XPATH, "//ul[@id='outputs']//button[text()='Preview']").click()
    video_el = visible(browser, "#preview video")
    wait_until(browser, lambda d: d.execute_script("return arguments[0].readyState >= 1 && arguments[0].videoWidth",
                                                   video_el), what="the preview's metadata")
    assert browser.execute_script("return arguments[0].videoWidth", video_el) == 320
    browser.execute_script("arguments[0].currentTime = 4", video_el)
    wait_until(browser, lambda d: d.execute_script("return arguments[0].readyState >= 2", video_el),
               what="a frame of the preview")
    link = browser.find_element(By.XPATH, "//ul[@id='outputs']//a[text()='Download']").get_attribute("href")
    assert link and httpx.get(link, timeout=30).content[4:8] == b"ftyp"
    usage = text_of(browser, "#usage")
    assert "gb_sec" in usage and "FFmpeg time" in usage
    shot(browser, "04-job-succeeded-preview")
    shot(browser, "04-job-succeeded-phone", PHONE)

    # The list shows it at 100 % with its pool, and the filters narrow it.
    browser.get(f"{api_url}/ui/jobs")
    row = visible(browser, f"tr[data-job='{job_id}']")
    assert "succeeded" in row.text and "100 %" in row.text and "cpu" in row.text
    Select(browser.find_element(By.ID, "filter-status")).select_by_value("failed")
    wait_until(browser, lambda d: not d.find_elements(By.CSS_SELECTOR, f"tr[data-job='{job_id}']"),
               what="the status filter")
    Select(browser.find_element(By.ID, "filter-status")).select_by_value("succeeded")
    Select(browser.find_element(By.ID, "filter-pool")).select_by_value("cpu")
    visible(browser, f"tr[data-job='{job_id}']")
    assert "status=succeeded" in browser.current_url and "pool=cpu" in browser.current_url
    Select(browser.find_element(By.ID, "filter-pool")).select_by_value("gpu")
    wait_until(browser, lambda d: not d.find_elements(By.CSS_SELECTOR, f"tr[data-job='{job_id}']"),
               what="the pool filter")
    Select(browser.find_element(By.ID, "filter-status")).select_by_value("")
    Select(browser.find_element(By.ID, "filter-pool")).select_by_value("")
    visible(browser, f"tr[data-job='{job_id}']")
    shot(browser, "05-jobs-list")
    shot(browser, "05-jobs-list-phone", PHONE)


def test_a_split_jobs_chunks_and_its_webhook_deliveries(browser: WebDriver, api_url: str, key: str, rest: Api,
                                                        clip: Path, receiver: Receiver) -> None:
    tmp = rest.call("POST", "/api/tmp-file", json={"file_name": "clip.mp4"}).json()["data"]
    assert httpx.put(tmp["upload_url"], content=clip.read_bytes(), timeout=60).status_code == 200
    r = rest.call("POST", "/api/ffmpeg", json={
        "input_files": {"input": tmp["download_url"]}, "output_files": ["split.mp4"], "parallel": {"chunks": 2},
        "ffmpeg_commands": ["-i {{input}} -c:v libx264 -preset ultrafast -c:a aac {{split.mp4}}"],
        "webhook_url": receiver.url})
    assert r.status_code == 200, r.text
    job_id = r.json()["data"]["id"]
    sign_in(browser, api_url, key)
    browser.get(f"{api_url}/ui/jobs/{job_id}")
    wait_until(browser, lambda d: text_of(d, "#job-status") == "succeeded", timeout=WAIT, what="the split job")
    # The page redraws its parts as their data arrives: the chunk table may trail the status word.
    wait_until(browser, lambda d: len(rows := d.find_elements(By.CSS_SELECTOR, "#chunks tr")) == 2
               and all("Succeeded" in row.text and "100 %" in row.text for row in rows),
               timeout=30, what="both chunks shown Succeeded at 100 %")
    wait_until(browser, lambda d: "HTTP 200" in text_of(d, "#webhook-attempts"), timeout=60, what="the delivery")
    assert "delivered" in text_of(browser, "#webhook-state") and receiver.posts[0]["id"] == job_id
    shot(browser, "06-split-job-chunks-webhook")


def test_cancel_a_queued_job(browser: WebDriver, api_url: str, key: str, rest: Api, kube_api: client.ApiClient,
                             stack: StackInfo) -> None:
    """A job held in the queue (suspended, as Kueue holds one) is cancelled from its page."""
    tenant = rest.call("GET", "/usage").json()["tenant"]
    name = f"ui-queued-{uuid.uuid4().hex[:6]}"
    group, version = API_VERSION.split("/")
    client.CustomObjectsApi(kube_api).create_namespaced_custom_object(group, version, stack.namespace, PLURAL, {
        "apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": name, "labels": {TENANT_LABEL: tenant}},
        "spec": {"tenant": tenant, "suspend": True, "inputs": [{"name": "in", "source": "https://example.com/a.mp4"}],
                 "outputs": [{"name": "out.mp4"}], "output": {"dirId": f"dir_q{uuid.uuid4().hex[:8]}"},
                 "commands": ["-i {{in}} -c:v libx264 {{out.mp4}}"]},
    })
    sign_in(browser, api_url, key)
    browser.get(f"{api_url}/ui/jobs/{name}")
    wait_until(browser, lambda d: text_of(d, "#job-status") == "queued", what="the queued job")
    cancel = visible(browser, "#cancel")
    shot(browser, "07-job-queued")
    cancel.click()
    wait_until(browser, ec.alert_is_present(), what="the confirmation")
    browser.switch_to.alert.accept()
    wait_until(browser, lambda d: text_of(d, "#job-status") == "cancelled", timeout=60, what="the cancellation")
    assert not browser.find_element(By.ID, "cancel").is_displayed()
    assert "Job was cancelled" in text_of(browser, "#error-section")
    assert rest.call("GET", f"/api/jobs/{name}").json()["data"]["status"] == "cancelled"
    shot(browser, "07-job-cancelled")


def test_a_failed_jobs_error_with_ffmpegs_stderr(browser: WebDriver, api_url: str, key: str, rest: Api,
                                                 video: Path) -> None:
    tmp = rest.call("POST", "/api/tmp-file", json={"file_name": "in.mp4"}).json()["data"]
    assert httpx.put(tmp["upload_url"], content=video.read_bytes(), timeout=60).status_code == 200
    r = rest.call("POST", "/api/ffmpeg", json={
        "input_files": {"input": tmp["download_url"]}, "output_files": ["output.mp4"],
        "ffmpeg_commands": ["-i {{input}} -c:v no_such_encoder {{output.mp4}}"]})
    assert r.status_code == 200, r.text
    job_id = r.json()["data"]["id"]
    assert wait_vgf(rest, job_id)["status"] == "failed"
    sign_in(browser, api_url, key)
    browser.get(f"{api_url}/ui/jobs/{job_id}")
    visible(browser, "#error-section")
    assert text_of(browser, "#job-status") == "failed"
    stderr = text_of(browser, "#error-text")
    assert "no_such_encoder" in stderr and "Unknown encoder" in stderr, stderr
    assert "failed" in text_of(browser, "#steps")
    shot(browser, "08-job-failed")
    shot(browser, "08-job-failed-phone", PHONE)


def test_the_forms_show_the_apis_validation_messages(browser: WebDriver, api_url: str, key: str, rest: Api) -> None:
    """A hostile command typed in the form is refused with exactly the message REST gives."""
    hostile = "-i /etc/passwd {{output.mp4}}"
    body = {"input_files": {}, "output_files": ["output.mp4"], "ffmpeg_commands": [hostile], "machine": "cpu"}
    over_rest = rest.call("POST", "/api/ffmpeg", json=body)
    assert over_rest.status_code == 400
    sign_in(browser, api_url, key)
    browser.get(f"{api_url}/ui/submit")
    row = visible(browser, "#vgf-inputs .row")
    row.find_element(By.CSS_SELECTOR, ".in-key").clear()
    cmds = browser.find_element(By.ID, "vgf-commands")
    cmds.clear()
    cmds.send_keys(hostile)
    browser.find_element(By.CSS_SELECTOR, "#vgf-form button[type=submit]").click()
    wait_until(browser, lambda d: text_of(d, "#vgf-error"), what="the validation message")
    assert text_of(browser, "#vgf-error") == f"The API refused the job (400): {over_rest.json()['message']}"
    assert "/ui/submit" in browser.current_url
    shot(browser, "09-submit-refused")
    shot(browser, "09-submit-refused-phone", PHONE)

    # The other request style: an unknown input file is the API's 404, shown as it is.
    browser.find_element(By.CSS_SELECTOR, "input[name=style][value=ffmpeg-api]").click()
    visible(browser, "#task-form")
    browser.find_element(By.CSS_SELECTOR, "#task-inputs .in-path").send_keys("dir_nope/missing.mp4")
    browser.find_element(By.CSS_SELECTOR, "#task-form button[type=submit]").click()
    wait_until(browser, lambda d: text_of(d, "#task-error"), what="the task's error")
    assert "Directory not found: dir_nope" in text_of(browser, "#task-error")
    shot(browser, "10-submit-task-refused")


def test_a_task_submitted_with_a_file_from_disk(browser: WebDriver, api_url: str, key: str, video: Path) -> None:
    """The other request style: the file is registered (POST /file) and uploaded by the browser,
    the task runs, and its page shows the structured form as one command."""
    sign_in(browser, api_url, key)
    browser.get(f"{api_url}/ui/submit")
    browser.find_element(By.CSS_SELECTOR, "input[name=style][value=ffmpeg-api]").click()
    visible(browser, "#task-form")
    browser.find_element(By.CSS_SELECTOR, "#task-inputs .in-file").send_keys(str(video))
    opts = browser.find_element(By.CSS_SELECTOR, "#task-outputs .out-opts")
    opts.clear()
    opts.send_keys("-vf scale=160:-2 -c:v libx264 -preset ultrafast")
    browser.find_element(By.CSS_SELECTOR, "#task-form button[type=submit]").click()
    wait_until(browser, ec.url_contains("/ui/jobs/job-"), timeout=60, what="the task's page")
    wait_until(browser, lambda d: text_of(d, "#job-status") == "succeeded", timeout=WAIT, what="the task")
    assert "-i {{in0}} -vf scale=160:-2 -c:v libx264 -preset ultrafast {{output.mp4}}" in text_of(browser, "#steps")
    assert "/video.mp4" in text_of(browser, "#io") and "ffmpeg-api" in text_of(browser, "#facts")
    video_el = visible(browser, "#preview video")
    wait_until(browser, lambda d: d.execute_script("return arguments[0].videoWidth", video_el) == 160,
               what="the preview")


def test_files_deleted_and_usage_per_day(browser: WebDriver, api_url: str, key: str, rest: Api, video: Path) -> None:
    dir_id = upload(rest, video, "keep.mp4")
    upload(rest, video, "remove-me.mp4", dir_id=dir_id)
    sign_in(browser, api_url, key)
    browser.get(f"{api_url}/ui/files?dir={dir_id}")
    visible(browser, "#files-section")
    wait_until(browser, lambda d: "remove-me.mp4" in text_of(d, "#files"), what="the directory's files")
    shot(browser, "11-files")
    browser.find_element(By.CSS_SELECTOR, "button[aria-label='Delete remove-me.mp4']").click()
    wait_until(browser, ec.alert_is_present(), what="the confirmation")
    browser.switch_to.alert.accept()
    wait_until(browser, lambda d: "remove-me.mp4" not in text_of(d, "#files"), what="the deletion")
    assert "keep.mp4" in text_of(browser, "#files")
    names = [f["file_name"] for f in rest.call("GET", f"/directory/{dir_id}", scheme="Basic").json()["files"]]
    assert names == ["keep.mp4"]
    shot(browser, "11-files-phone", PHONE)

    # At least one finished job today, whichever tests ran before.
    tmp = rest.call("POST", "/api/tmp-file", json={"file_name": "in.mp4"}).json()["data"]
    assert httpx.put(tmp["upload_url"], content=video.read_bytes(), timeout=60).status_code == 200
    done = rest.call("POST", "/api/ffmpeg?wait=true", json={
        "input_files": {"in": tmp["download_url"]}, "output_files": ["o.mp4"],
        "ffmpeg_commands": ["-i {{in}} -t 1 {{o.mp4}}"]}).json()["data"]
    assert done["status"] == "succeeded", done
    browser.get(f"{api_url}/ui/usage")
    wait_until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#days tr"), what="usage per day")
    daily = rest.call("GET", "/ui/api/usage/daily").json()
    today = daily["days"][0]
    assert today["jobs"] >= 1 and today["day"] in text_of(browser, "#days")
    assert str(rest.call("GET", "/usage").json()["usage"]["jobs"]) in text_of(browser, "#totals")
    shot(browser, "12-usage")
    shot(browser, "12-usage-phone", PHONE)


def test_keyboard_only_sign_in_and_navigation(browser: WebDriver, api_url: str, key: str) -> None:
    """Tab goes from the skip link to the key field; Enter signs in; every visible form control
    on the submit page has a label."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    browser.get(f"{api_url}/ui/login")
    browser.execute_script("sessionStorage.clear()")
    browser.get(f"{api_url}/ui/login")
    visible(browser, "#api-key")
    browser.execute_script("document.querySelector('.skip').focus()")
    assert browser.switch_to.active_element.get_attribute("class") == "skip"
    ActionChains(browser).send_keys(Keys.TAB).perform()  # the brand link
    assert browser.switch_to.active_element.text == "kubeffmpeg"
    ActionChains(browser).send_keys(Keys.TAB).perform()
    assert browser.switch_to.active_element.get_attribute("id") == "api-key"
    ActionChains(browser).send_keys(key, Keys.ENTER).perform()
    wait_until(browser, ec.url_contains("/ui/jobs"), what="signing in with the keyboard")
    browser.get(f"{api_url}/ui/submit")
    visible(browser, "#vgf-form")
    unlabelled = browser.execute_script("""
      return [...document.querySelectorAll('input:not([type=radio]), select, textarea')]
        .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label') && e.offsetParent !== null)
        .map(e => e.id || e.outerHTML)""")
    assert unlabelled == []
