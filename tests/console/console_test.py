#!/usr/bin/python3
"""console_test.py: the console (api/console/) in a real browser.

Headless Debian Chromium, driven through chromedriver by python3-selenium,
against a real `kiroku serve --demo --gateway ... --gateway-operator ...` in a
temporary directory. What a tenant's master, an operator and an auditor do
through the pages, checked against what the API then answers:

  - a master logs in with the keyboard (fields in reading order, a visible
    focus ring), sees the notice an operator published and acknowledges it,
    reads an incident notice ("I have read this"), creates a user, grants it
    a permission (and, when the account changed meanwhile, is told and sees
    it reloaded instead of an error), unlocks it, revokes a permission,
    deletes another account, registers a contact, creates, puts on and takes
    off tags, defines a custom attribute and sets it, reads the tenant's
    history in JST (checked against the API's own JST), filters it,
    downloads the contacts as CSV, switches to English and back, and is
    sent back to the login when its session ends behind the page;
  - the user it made sees only the screens its permissions allow;
  - the master's session cannot reach operator screens or ops on either
    listener; a POST without the CSRF header and a cross-site form post are
    refused and append nothing; the cookie has its flags; logout ends it;
  - an operator sees the overdue incident first and who has read it,
    notifies the tenant from the page (it is overdue no more), sees the
    tenants, opens an incident, resolves another (after a conflict), publishes
    a notice the master then sees, acknowledges the overdue incident's alert,
    sees the backup serve took (verified) and the newest checkpoint, and on
    the operators screen (no actions on its own row) creates another
    operator, locks, unlocks and deletes it;
  - an auditor sees the timeline and downloads the export, which
    `kiroku audit verify` accepts with the journal's first public key;
  - the Content-Security-Policy holds: the browser logs no blocked inline
    code and no script error.

Usage: console_test.py KIROKU_BIN ARTIFACTS_DIR. Screenshots of every screen
go to ARTIFACTS_DIR (listed at the end). Exit 0 when all passed.
"""

import http.cookiejar
import http.server
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select, WebDriverWait

WAIT_S = float(os.environ.get("KR_TEST_WAIT_MS", "30000")) / 1000.0
HOUR_NS = 3600 * 10**9
JST_RE = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2} JST$")

shots = []
T0 = time.monotonic()


def fail(msg):
    raise AssertionError(msg)


def check(cond, msg):
    if not cond:
        fail(msg)


class Api:
    """A gateway client as a browser is one: POST /session, the cookie, and
    X-Kiroku-CSRF on every POST."""

    def __init__(self, base):
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))
        self.csrf = None

    def post(self, path, body, csrf=True, ctype="application/json"):
        data = json.dumps(body).encode() if not isinstance(body, bytes) else body
        req = urllib.request.Request(self.base + path, data=data, method="POST")
        req.add_header("Content-Type", ctype)
        if csrf and self.csrf:
            req.add_header("X-Kiroku-CSRF", self.csrf)
        try:
            with self.opener.open(req, timeout=WAIT_S) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")

    def login(self, tenant_code, email, password):
        status, j = self.post("/session", {"tenant_code": tenant_code, "email": email, "password": password}, csrf=False)
        check(status == 200 and j.get("ok"), f"login {email}: {status} {j}")
        self.csrf = j["result"]["csrf"]
        return j["result"]

    def call(self, op, args=None):
        status, j = self.post("/api/" + op, args or {})
        check(status == 200 and j.get("ok"), f"{op}: {status} {j}")
        return j["result"]


def wait_for(driver, what, fn):
    try:
        # The page re-renders what it reloads: an element found a moment ago
        # may be gone (stale) or not there yet; look again.
        return WebDriverWait(driver, WAIT_S, poll_frequency=0.05,
                             ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)).until(fn)
    except Exception as e:  # the timeout, said with what was awaited
        shot(driver, "failed-" + re.sub(r"[^a-z0-9]+", "-", what.lower())[:40])
        fail(f"waited {WAIT_S:.0f} s for {what}: {type(e).__name__}")


def ready(driver, screen):
    wait_for(driver, f"screen {screen}", lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == screen)


def shot(driver, name):
    path = os.path.join(ARTIFACTS, f"{len(shots) + 1:02d}-{name}.png")
    driver.save_screenshot(path)
    shots.append(f"{path}  (at {time.monotonic() - T0:.1f} s)")


def status_text(driver):
    return driver.find_element(By.ID, "status").text


def wait_status(driver, text):
    wait_for(driver, f"status {text!r}", lambda d: status_text(d) == text)


def goto(driver, screen):
    driver.find_element(By.CSS_SELECTOR, f'nav a[data-screen="{screen}"]').click()
    ready(driver, screen)


def browser_login(driver, base, tenant_code, email, password, screen, tab_order=False):
    driver.get(base + "/")
    ready(driver, "login")
    if tab_order:  # the keyboard walks the form in reading order, from the first field
        order = []
        for i in range(4):
            a = driver.switch_to.active_element
            order.append(a.get_attribute("name") or a.get_attribute("type"))
            if i < 3:
                a.send_keys(Keys.TAB)
        check(order == ["tenant_code", "email", "password", "submit"], f"tab order: {order}")
        # the focus is visible (the ring of :focus-visible)
        ring = driver.execute_script("const s = getComputedStyle(document.activeElement);"
                                     "return [s.outlineStyle, s.outlineWidth];")
        check(ring[0] != "none" and ring[1] != "0px", f"focus ring: {ring}")
        shot(driver, "login")
    driver.find_element(By.NAME, "tenant_code").send_keys(tenant_code)
    driver.find_element(By.NAME, "email").send_keys(email)
    driver.find_element(By.NAME, "password").send_keys(password + Keys.ENTER)  # the keyboard submits
    ready(driver, screen)
    check(driver.switch_to.active_element.get_attribute("id") == "main", "focus did not move to the page")


def page_fetch(driver, path, body, csrf):
    """POST from the page itself (same origin, the cookie goes along):
    [status, reply]."""
    return driver.execute_async_script(
        """
        const [path, body, csrf, done] = arguments;
        const h = {'Content-Type': 'application/json'};
        if (csrf) h['X-Kiroku-CSRF'] = csrf;
        fetch(path, {method: 'POST', headers: h, body: JSON.stringify(body), credentials: 'same-origin'})
          .then(async r => done([r.status, await r.json()])).catch(e => done([0, String(e)]));
        """,
        path,
        body,
        csrf,
    )


def session_csrf(driver):
    return driver.execute_async_script(
        "const done = arguments[0]; fetch('/session').then(r => r.json()).then(j => done(j.result.csrf));"
    )


def start_server(kiroku, tmp):
    data = os.path.join(tmp, "data")
    # Operators notify tenants themselves here, so an incident past its
    # deadline stays overdue (serve would otherwise e-mail the notice).
    conf = os.path.join(tmp, "kiroku.conf")
    with open(conf, "w") as f:
        f.write("incidents.auto_notify = false\n")
    os.chmod(conf, 0o600)
    out = open(os.path.join(tmp, "serve.out"), "w+")
    err = open(os.path.join(tmp, "serve.err"), "w+")
    p = subprocess.Popen(
        [
            kiroku, "serve", "--data", data, "--listen", "tcp://127.0.0.1:0",
            "--gateway", "http://127.0.0.1:0", "--gateway-operator", "http://127.0.0.1:0",
            "--demo", "--json", "--config", conf, "--backups", os.path.join(tmp, "backups"),
            "--backup-at", "00:00",  # passed at any time of day: the backup is taken at start
        ],
        stdout=out,
        stderr=err,
    )
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        out.seek(0)
        for line in out:
            if line.startswith("{") and '"gateway"' in line:
                return p, data, json.loads(line)
        if p.poll() is not None:
            err.seek(0)
            fail(f"serve exited {p.returncode}: {err.read()}")
        time.sleep(0.05)
    fail("serve did not print its listening line")


def demo_accounts(data):
    text = open(os.path.join(data, "demo.txt")).read()
    m = re.search(r'demo tenant:\s+(\S+)', text)
    master = re.search(r"master:\s+(\S+)\s+password (\S+)", text)
    op = re.search(r"operator:\s+(\S+)\s+password (\S+)", text)
    tenant = re.search(r'tenant "(\d+)"', text)
    check(m and master and op and tenant, f"demo.txt: {text}")
    return {
        "code": m.group(1),
        "master": (master.group(1), master.group(2)),
        "operator": (op.group(1), op.group(2)),
        "tenant": tenant.group(1),
    }


def make_driver(downloads):
    o = webdriver.ChromeOptions()
    o.binary_location = "/usr/bin/chromium"
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--window-size=1280,1400", "--lang=ja-JP", "--no-first-run", "--disable-extensions"):
        o.add_argument(a)
    o.add_experimental_option(
        "prefs",
        {
            "intl.accept_languages": "ja,en-US",
            "download.default_directory": downloads,
            "download.prompt_for_download": False,
        },
    )
    o.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    d = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=o)
    d.set_script_timeout(WAIT_S)
    d.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": downloads})
    return d


def console_errors(driver, logs):
    """Browser log lines that mean the CSP blocked something or a script
    failed. Failed loads (the 401 of GET /session before login, refusals
    the test provokes) are not errors of the page."""
    bad = []
    for e in driver.get_log("browser"):
        logs.append(e)
        m = e.get("message", "")
        if "Content Security Policy" in m or "Refused to" in m or "Uncaught" in m:
            bad.append(m)
        elif e.get("level") == "SEVERE" and "Failed to load resource" not in m:
            bad.append(m)
    return bad


def seed(gw, gwop, acc):
    """The operator publishes a notice for everyone and opens two incidents
    for the demo tenant: one detected 80 hours ago and never notified
    (overdue), one an hour ago. The master registers a contact and a tag."""
    op = Api(gwop)
    op.login("platform", *acc["operator"])
    now = time.time_ns()
    notice = op.call("notices.publish", {
        "notice_kind": "change", "title": "利用規約改定のお知らせ",
        "body": "2027年1月1日より利用規約を改定します。", "effective": str(now), "audience": "all",
    })["notice"]
    late = op.call("incidents.open", {
        "incident_scope": "outage", "severity": "high", "title": "API停止(遅延通知)",
        "summary": "APIが30分応答しませんでした。", "detected": str(now - 80 * HOUR_NS),
        "audience": "listed", "tenants": [acc["tenant"]],
    })["incident"]
    fresh = op.call("incidents.open", {
        "incident_scope": "other", "severity": "low", "title": "管理画面の表示遅延",
        "summary": "管理画面の表示が遅くなっています。", "detected": str(now - HOUR_NS),
        "audience": "listed", "tenants": [acc["tenant"]],
    })["incident"]
    m = Api(gw)
    m.login(acc["code"], *acc["master"])
    contact = m.call("contacts.register", {"name": "山田 太郎", "name_kana": "ヤマダ タロウ", "email": "taro@example.jp"})["contact"]
    m.call("tags.create", {"tag_name": "VIP"})
    return op, m, {"notice": notice, "late": late, "fresh": fresh, "contact": contact}


def check_headers(base):
    """The console's page and a script carry the policy that forbids inline
    code; the page allows no framing."""
    for path in ("/", "/app.js", "/app.css"):
        with urllib.request.urlopen(base + path, timeout=WAIT_S) as r:
            csp = r.headers.get("Content-Security-Policy", "")
            check("script-src 'self'" in csp and "style-src 'self'" in csp and "unsafe" not in csp
                  and "frame-ancestors 'none'" in csp, f"{path}: CSP {csp!r}")
            check(r.headers.get("X-Content-Type-Options") == "nosniff", f"{path}: nosniff")


def master_flow(d, gw, gwop, acc, op, m, ids):
    check_headers(gw)
    check_headers(gwop)
    browser_login(d, gw, acc["code"], *acc["master"], "dashboard", tab_order=True)
    check(d.find_element(By.TAG_NAME, "html").get_attribute("lang") == "ja", "page not in Japanese")
    check(d.find_element(By.CSS_SELECTOR, 'nav a[data-screen="dashboard"]').text == "ダッシュボード", "menu not Japanese")
    card = wait_for(d, "the published notice", lambda d: d.find_element(By.CSS_SELECTOR, f'[data-notice="{ids["notice"]}"]'))
    check("利用規約改定のお知らせ" in card.text, f"notice card: {card.text}")
    shot(d, "master-dashboard")

    # Cookie flags, as the browser holds them.
    ck = [c for c in d.get_cookies() if c["name"] == "kiroku_session"]
    check(len(ck) == 1 and ck[0]["httpOnly"] and ck[0].get("sameSite") == "Strict" and ck[0]["path"] == "/",
          f"cookie: {ck}")
    check(d.execute_script("return document.cookie").find("kiroku_session") < 0, "the page can read the cookie")

    # Acknowledge the notice: it leaves the unread list, the API agrees.
    card.find_element(By.CSS_SELECTOR, '[data-action="ack-notice"]').click()
    wait_status(d, "お知らせを確認しました。")
    wait_for(d, "the notice gone from unread", lambda d: not d.find_elements(By.CSS_SELECTOR, f'[data-notice="{ids["notice"]}"]'))
    acked = [n for n in m.call("notices.list")["notices"] if n["notice"] == ids["notice"]]
    check(acked and acked[0]["acknowledged"] is True, f"notices.list after ack: {acked}")

    # The late incident: its history, then "I have read this".
    inc = d.find_element(By.CSS_SELECTOR, f'[data-incident="{ids["late"]}"]')
    inc.find_element(By.CSS_SELECTOR, "button[aria-expanded]").click()
    wait_for(d, "incident history", lambda d: d.find_element(By.CSS_SELECTOR, f'[data-incident="{ids["late"]}"] ol.history li'))
    hist = d.find_element(By.CSS_SELECTOR, f'[data-incident="{ids["late"]}"] ol.history li')
    check("APIが30分応答しませんでした。" in hist.text and " JST" in hist.text, f"history: {hist.text}")
    inc.find_element(By.CSS_SELECTOR, '[data-action="ack-incident"]').click()
    wait_status(d, "インシデントのお知らせを既読にしました。")
    read = wait_for(d, "read mark", lambda d: d.find_element(By.CSS_SELECTOR, f'[data-incident="{ids["late"]}"] [data-read]'))
    items = {i["incident"]: i for i in m.call("incidents.list")["incidents"]}
    at = items[ids["late"]]["acknowledged_at_jst"]
    check(at and read.text == f"既読({at[:10]} {at[11:16]} JST)", f"read mark {read.text!r} vs {at}")
    check(items[ids["fresh"]]["acknowledged_at"] is None, "the other incident was marked read")
    shot(d, "master-incident-read")

    # Accounts: create a user, grant a permission.
    goto(d, "accounts")
    f = d.find_element(By.CSS_SELECTOR, "main form")
    f.find_element(By.NAME, "email").send_keys("staff@demo.kiroku.example")
    f.find_element(By.NAME, "display_name").send_keys("佐藤 花子")
    f.find_element(By.NAME, "password").send_keys("correct horse battery staple")
    Select(f.find_element(By.NAME, "role")).select_by_value("user")
    f.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait_status(d, "アカウントを作成しました。")
    row_sel = 'tr[data-email="staff@demo.kiroku.example"]'
    row = wait_for(d, "the new user's row", lambda d: d.find_element(By.CSS_SELECTOR, row_sel))
    users = {u["email"]: u for u in m.call("users.list")["users"]}
    check("staff@demo.kiroku.example" in users and users["staff@demo.kiroku.example"]["role"] == "user", f"users: {users}")

    Select(row.find_element(By.NAME, "permission")).select_by_value("contacts.read")
    row.find_element(By.CSS_SELECTOR, '[data-action="grant"]').click()
    wait_status(d, "変更しました。")
    wait_for(d, "the permission shown", lambda d: "連絡先の閲覧" in d.find_element(By.CSS_SELECTOR, row_sel + " td.perms").text)
    u = {u["email"]: u for u in m.call("users.list")["users"]}["staff@demo.kiroku.example"]
    check(u["permissions"] == ["contacts.read"], f"permissions after grant: {u['permissions']}")

    # The account changes behind the page's back: the grant is refused as a
    # conflict, the page says so in words and shows the account as it is.
    m.call("users.lock", {"account": u["account"], "version": u["version"]})
    row = d.find_element(By.CSS_SELECTOR, row_sel)
    Select(row.find_element(By.NAME, "permission")).select_by_value("audit.read")
    row.find_element(By.CSS_SELECTOR, '[data-action="grant"]').click()
    wait_status(d, "他の操作で内容が変わっていたため、最新の状態を読み込み直しました。もう一度操作してください。")
    wait_for(d, "the row reloaded, locked", lambda d: "ロック中" in d.find_element(By.CSS_SELECTOR, row_sel).text)
    shot(d, "master-accounts-conflict")
    row = d.find_element(By.CSS_SELECTOR, row_sel)
    Select(row.find_element(By.NAME, "permission")).select_by_value("audit.read")
    row.find_element(By.CSS_SELECTOR, '[data-action="grant"]').click()
    wait_for(d, "the second permission", lambda d: "履歴の閲覧" in d.find_element(By.CSS_SELECTOR, row_sel + " td.perms").text)
    u = {u["email"]: u for u in m.call("users.list")["users"]}["staff@demo.kiroku.example"]
    check(sorted(u["permissions"]) == ["audit.read", "contacts.read"], f"permissions: {u['permissions']}")
    d.find_element(By.CSS_SELECTOR, row_sel + ' [data-action="unlock"]').click()
    wait_for(d, "the user unlocked", lambda d: d.find_elements(By.CSS_SELECTOR, row_sel + ' [data-action="lock"]'))
    u = {u["email"]: u for u in m.call("users.list")["users"]}["staff@demo.kiroku.example"]
    check(u["locked"] is False, f"after unlock: {u}")
    shot(d, "master-accounts")

    # Revoke, then delete an account (the page asks first).
    row = d.find_element(By.CSS_SELECTOR, row_sel)
    Select(row.find_element(By.NAME, "permission")).select_by_value("audit.read")
    row.find_element(By.CSS_SELECTOR, '[data-action="revoke"]').click()
    wait_for(d, "the permission revoked", lambda d: "履歴の閲覧" not in d.find_element(By.CSS_SELECTOR, row_sel + " td.perms").text)
    staff = {u["email"]: u for u in m.call("users.list")["users"]}["staff@demo.kiroku.example"]
    check(staff["permissions"] == ["contacts.read"], f"after revoke: {staff['permissions']}")
    m.call("users.create", {"email": "temp@demo.kiroku.example", "password": "correct horse battery staple",
                            "role": "user"})
    goto(d, "dashboard")
    goto(d, "accounts")
    temp_sel = 'tr[data-email="temp@demo.kiroku.example"]'
    d.find_element(By.CSS_SELECTOR, temp_sel + ' [data-action="delete"]').click()
    d.switch_to.alert.accept()
    wait_for(d, "the account deleted", lambda d: not d.find_elements(By.CSS_SELECTOR, temp_sel))
    check(not [u for u in m.call("users.list")["users"] if u["email"] == "temp@demo.kiroku.example"], "not deleted")

    # Contacts: register one and a tag from the forms, take that tag off
    # again, then tag the seeded contact.
    goto(d, "contacts")
    f = d.find_elements(By.CSS_SELECTOR, ".forms form")[0]
    f.find_element(By.NAME, "name").send_keys("鈴木 一郎")
    f.find_element(By.NAME, "email").send_keys("ichiro@example.jp")
    f.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait_status(d, "連絡先を登録しました。")
    wait_for(d, "the new contact listed", lambda d: "鈴木 一郎" in d.find_element(By.ID, "contacts").text)
    f = d.find_elements(By.CSS_SELECTOR, ".forms form")[1]
    f.find_element(By.NAME, "tag_name").send_keys("要連絡")
    f.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait_status(d, "タグを作成しました。")
    d.find_element(By.CSS_SELECTOR, f'tr[data-contact="{ids["contact"]}"] [data-action="open-contact"]').click()
    det = wait_for(d, "the details", lambda d: d.find_element(By.CSS_SELECTOR, "#contact-detail select[name=tag]"))
    Select(det).select_by_visible_text("要連絡")
    d.find_element(By.CSS_SELECTOR, '#contact-detail [data-action="tag"]').click()
    wait_status(d, "タグを付けました。")
    untag = wait_for(d, "the tag's remove button",
                     lambda d: d.find_element(By.CSS_SELECTOR, '#contact-detail button[aria-label="タグ「要連絡」を外す"]'))
    untag.click()
    wait_status(d, "タグを外しました。")
    check(not m.call("contacts.get", {"contact": ids["contact"]})["tags"], "the tag stayed on")

    # Contacts: tag the contact.
    d.find_element(By.CSS_SELECTOR, f'tr[data-contact="{ids["contact"]}"] [data-action="open-contact"]').click()
    wait_for(d, "the contact's details", lambda d: "山田 太郎" in d.find_element(By.ID, "contact-detail").text)
    det = d.find_element(By.ID, "contact-detail")
    check(d.switch_to.active_element.get_attribute("id") == "detail-title", "focus did not move to the details")
    Select(det.find_element(By.NAME, "tag")).select_by_visible_text("VIP")
    det.find_element(By.CSS_SELECTOR, '[data-action="tag"]').click()
    wait_status(d, "タグを付けました。")
    wait_for(d, "the tag on the contact", lambda d: d.find_elements(By.CSS_SELECTOR, "#contact-detail ul.tags .tag"))
    got = m.call("contacts.get", {"contact": ids["contact"]})
    check([t["tag_name"] for t in got["tags"]] == ["VIP"], f"contact tags: {got['tags']}")

    # A custom attribute: defined (number), then set on the contact.
    f = d.find_elements(By.CSS_SELECTOR, ".forms form")[2]
    f.find_element(By.NAME, "attribute_key").send_keys("rank")
    Select(f.find_element(By.NAME, "attribute_type")).select_by_value("number")
    f.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait_status(d, "属性を定義しました。")
    row = wait_for(d, "the contacts again", lambda d: d.find_element(
        By.CSS_SELECTOR, f'tr[data-contact="{ids["contact"]}"] [data-action="open-contact"]'))
    row.click()
    det = wait_for(d, "the attribute control", lambda d: d.find_element(By.CSS_SELECTOR, "#contact-detail select[name=attribute_key]"))
    Select(det).select_by_value("rank")
    d.find_element(By.CSS_SELECTOR, "#contact-detail input[name=value]").send_keys("3")
    d.find_element(By.CSS_SELECTOR, '#contact-detail [data-action="set-attribute"]').click()
    wait_status(d, "属性の値を設定しました。")
    wait_for(d, "the value shown", lambda d: "3" in d.find_element(By.CSS_SELECTOR, "#contact-detail dl.attrs").text)
    got = m.call("contacts.get", {"contact": ids["contact"]})
    check([(a["attribute_key"], a["value"]) for a in got["attributes"]] == [("rank", 3)], f"attributes: {got['attributes']}")
    shot(d, "master-contacts")

    # History in JST, matching the API's own JST, then filtered.
    goto(d, "history")
    rows = wait_for(d, "history rows", lambda d: d.find_elements(By.CSS_SELECTOR, "#history tbody tr"))
    api = {str(e["seq"]): e for e in m.call("audit.list", {"limit": 1000})["entries"]}
    types = set()
    for r in rows:
        cells = [c.text for c in r.find_elements(By.TAG_NAME, "td")]
        check(JST_RE.match(cells[0]), f"time not in JST: {cells}")
        e = api.get(cells[3])
        check(e is not None, f"seq {cells[3]} not in audit.list")
        check(cells[0] == f"{e['time_jst'][:10]} {e['time_jst'][11:16]} JST", f"{cells[0]} vs {e['time_jst']}")
        check(cells[2] == e["type"], f"{cells} vs {e}")
        types.add(cells[2])
    for want in ("notice.acknowledged", "incident.acknowledged", "account.created", "contact.tagged",
                 "account.permissions_granted"):
        check(want in types, f"history lacks {want}: {sorted(types)}")
    shot(d, "master-history")
    d.find_element(By.CSS_SELECTOR, "form.filters input[name=type]").send_keys("contact.tagged")
    d.find_element(By.CSS_SELECTOR, "form.filters button[type=submit]").click()
    tagged = len(m.call("audit.list", {"type": "contact.tagged"})["entries"])
    check(tagged == 2, f"{tagged} contact.tagged records")
    wait_for(d, "the filtered history", lambda d: len(d.find_elements(By.CSS_SELECTOR, "#history tbody tr")) == tagged)
    types = {c.text for c in d.find_elements(By.CSS_SELECTOR, "#history tbody tr td:nth-child(3)")}
    check(types == {"contact.tagged"}, f"filtered: {types}")

    # The utility export: every contact as a CSV download.
    goto(d, "export")
    d.find_element(By.ID, "export-run").click()
    wait_status(d, "2 件の連絡先を書き出しました。")
    def csv_file(_):
        got = [f for f in os.listdir(DOWNLOADS) if f.startswith("contacts-") and f.endswith(".csv")]
        return os.path.join(DOWNLOADS, got[0]) if got else None
    path = wait_for(d, "the CSV download", csv_file)
    wait_for(d, "the CSV written", lambda _: "山田 太郎" in open(path, encoding="utf-8-sig").read())
    rows = open(path, encoding="utf-8-sig").read().splitlines()
    check(rows[0] == "contact,name,name_kana,email,phone,line_user_id,note" and len(rows) == 3
          and [r for r in rows if r.startswith(ids["contact"] + ",山田 太郎,ヤマダ タロウ,taro@example.jp")]
          and [r for r in rows if ",鈴木 一郎,,ichiro@example.jp" in r], f"CSV: {rows}")
    shot(d, "master-export")

    # English on request, Japanese again.
    d.find_element(By.ID, "lang").click()
    wait_for(d, "English", lambda d: d.find_element(By.CSS_SELECTOR, 'nav a[data-screen="history"]').text == "History")
    check(d.find_element(By.TAG_NAME, "html").get_attribute("lang") == "en", "lang attribute")
    shot(d, "master-history-en")
    d.find_element(By.ID, "lang").click()
    wait_for(d, "Japanese", lambda d: d.find_element(By.CSS_SELECTOR, 'nav a[data-screen="history"]').text == "履歴")

    security_as_master(d, gw, gwop, acc, m)

    # The session ends behind the page's back: the next screen says so and
    # offers the login, which brings the person back to that screen.
    st, j = page_fetch(d, "/session/logout", {}, session_csrf(d))
    check(st == 200 and j["ok"], f"logout from outside the page: {st} {j}")
    goto_link = d.find_element(By.CSS_SELECTOR, 'nav a[data-screen="accounts"]')
    goto_link.click()
    ready(d, "login")
    check(d.find_element(By.ID, "login-error").text == "セッションが終了しました。もう一度ログインしてください。",
          "no word about the ended session")
    shot(d, "session-ended")
    d.find_element(By.NAME, "tenant_code").send_keys(acc["code"])
    d.find_element(By.NAME, "email").send_keys(acc["master"][0])
    d.find_element(By.NAME, "password").send_keys(acc["master"][1] + Keys.ENTER)
    ready(d, "accounts")

    # Logout ends the session and clears the cookie.
    d.find_element(By.ID, "logout").click()
    ready(d, "login")
    check(not [c for c in d.get_cookies() if c["name"] == "kiroku_session"], "cookie left after logout")
    shot(d, "logged-out")


def tenant_records(m):
    """The tenant's history but session bookkeeping and the system's own
    work (e-mails going out meanwhile): what a refused request must not add
    to."""
    return [e for e in m.call("audit.list", {"limit": 1000})["entries"]
            if not e["type"].startswith("session.") and e["actor"] != "system"]


def security_as_master(d, gw, gwop, acc, m):
    csrf = session_csrf(d)
    # The master's session, from the page: operator ops refused on the client listener.
    st, j = page_fetch(d, "/api/tenants.list", {}, csrf)
    check(st == 403 and j["error"]["code"] == "forbidden", f"tenants.list as master: {st} {j}")
    before = tenant_records(m)
    # A POST with the cookie and no CSRF header, or a wrong one: refused, nothing runs.
    body = {"email": "evil@demo.kiroku.example", "password": "correct horse battery staple", "role": "user"}
    st, j = page_fetch(d, "/api/users.create", body, None)
    check(st == 403 and j["error"]["code"] == "forbidden" and "csrf" in j["error"]["message"], f"no csrf: {st} {j}")
    st, j = page_fetch(d, "/api/users.create", body, "00" * 32)
    check(st == 403 and j["error"]["code"] == "forbidden", f"wrong csrf: {st} {j}")
    # A cross-site form post (another origin's page submits to the gateway).
    evil = CrossSite(gw + "/api/users.create")
    try:
        d.get(evil.url)
        wait_for(d, "the cross-site post answered", lambda d: d.current_url.startswith(gw))
        shot(d, "cross-site-post-refused")
    finally:
        evil.close()
    check(not [u for u in m.call("users.list")["users"] if u["email"] == "evil@demo.kiroku.example"],
          "a refused post created an account")
    after = tenant_records(m)
    check(after == before, f"refused posts appended: {after[len(before):]}")
    # The master on the operator listener: no operator screen, no operator op.
    d.get(gwop.replace("127.0.0.1", "localhost") + "/#/tenants")
    ready(d, "login")
    d.find_element(By.NAME, "tenant_code").send_keys(acc["code"])
    d.find_element(By.NAME, "email").send_keys(acc["master"][0])
    d.find_element(By.NAME, "password").send_keys(acc["master"][1])
    d.find_element(By.CSS_SELECTOR, "#login button[type=submit]").click()
    ready(d, "dashboard")
    check(not d.find_elements(By.CSS_SELECTOR, 'nav a[data-screen="tenants"]'), "operator menu shown to a master")
    st, j = page_fetch(d, "/api/tenants.list", {}, session_csrf(d))
    check(st == 403 and j["error"]["code"] == "forbidden", f"tenants.list as master (operator listener): {st} {j}")
    d.find_element(By.ID, "logout").click()
    ready(d, "login")
    d.get(gw + "/")
    ready(d, "dashboard")


class CrossSite:
    """A page of another origin whose script submits a form to the gateway,
    as a hostile site would (text/plain: a form cannot send JSON)."""

    def __init__(self, target):
        page = (
            "<!doctype html><form id=f method=post enctype=text/plain action='%s'>"
            "<input name='{\"email\":\"evil@demo.kiroku.example\",\"password\":\"correct horse battery staple\",\"role\":\"user\",\"x\":\"' value='\"}'>"
            "</form><script>document.getElementById('f').submit()</script>" % target
        ).encode()

        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.end_headers()
                self.wfile.write(page)

            def log_message(self, *a):
                pass

        # Threads, so a connection the browser keeps open (or opens ahead)
        # does not hold up shutdown.
        self.srv = http.server.ThreadingHTTPServer(("127.0.0.2", 0), H)
        self.srv.daemon_threads = True
        self.url = "http://127.0.0.2:%d/" % self.srv.server_address[1]
        self.t = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.t.start()

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


def operator_flow(d, gwop, acc, ids, m, op):
    # The alert the overdue incident raises (the scanner runs every few
    # seconds), before the operator notifies the tenant below.
    def overdue_alert(_):
        got = [a for a in op.call("alerts.list", {"open_only": True})["alerts"] if a["alert_rule"] == "incident_overdue"]
        return got[0] if got else None
    alert = wait_for(d, "the incident_overdue alert", overdue_alert)
    base = gwop.replace("127.0.0.1", "localhost")  # its own cookie jar: another host
    browser_login(d, base, "platform", *acc["operator"], "incidents")
    first = wait_for(d, "incident rows", lambda d: d.find_elements(By.CSS_SELECTOR, "#incidents tbody tr"))[0]
    check(first.get_attribute("data-incident") == ids["late"] and "overdue" in first.get_attribute("class"),
          f"first incident: {first.get_attribute('data-incident')} {first.get_attribute('class')}")
    check("期限超過" in first.find_element(By.CSS_SELECTOR, "td.left").text, f"time left: {first.text}")
    fresh = d.find_element(By.CSS_SELECTOR, f'tr[data-incident="{ids["fresh"]}"] td.left').text
    check(fresh.startswith("残り 70時間") or fresh.startswith("残り 71時間"), f"fresh incident: {fresh}")
    shot(d, "operator-incidents")
    first.find_element(By.CSS_SELECTOR, '[data-action="readers"]').click()
    rows = wait_for(d, "readers", lambda d: d.find_elements(By.CSS_SELECTOR, "#readers tbody tr"))
    cells = [c.text for c in rows[0].find_elements(By.TAG_NAME, "td")]
    master = m.call("auth.whoami")["account"]
    check(len(rows) == 1 and cells[0] == acc["tenant"] and cells[1] == acc["code"] and cells[2] == master
          and JST_RE.match(cells[3]),
          f"readers: {cells}")
    shot(d, "operator-readers")

    # The overdue notification, sent from the page: the incident is no longer overdue.
    due = d.find_element(By.CSS_SELECTOR, f'#due tr[data-due="{ids["late"]}/{acc["tenant"]}"]')
    check("overdue" in due.get_attribute("class"), f"due row: {due.get_attribute('class')}")
    due.find_element(By.CSS_SELECTOR, '[data-action="notify-email"]').click()
    wait_status(d, "通知を記録しました。")
    wait_for(d, "the late incident no longer overdue",
             lambda d: "overdue" not in d.find_element(By.CSS_SELECTOR, f'#incidents tr[data-incident="{ids["late"]}"]').get_attribute("class"))
    late = [x for x in op.call("incidents.all")["incidents"] if x["incident"] == ids["late"]][0]
    check(late["overdue"] is False and late["unnotified"] == 0, f"after notify: {late}")
    left = d.find_element(By.CSS_SELECTOR, f'#incidents tr[data-incident="{ids["late"]}"] td.left').text
    check(left == "全テナントに通知済み", f"time left once notified: {left}")

    # An incident opened from the page, for the demo tenant, detected now (JST input).
    f = d.find_element(By.CSS_SELECTOR, "main form")
    Select(f.find_element(By.NAME, "incident_scope")).select_by_value("breach")
    Select(f.find_element(By.NAME, "severity")).select_by_value("critical")
    f.find_element(By.NAME, "title").send_keys("不審なログインの検知")
    f.find_element(By.NAME, "summary").send_keys("管理画面への不審なログインを検知しました。")
    Select(f.find_element(By.NAME, "audience")).select_by_value("listed")
    f.find_element(By.NAME, "tenants").send_keys(acc["tenant"])
    f.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait_status(d, "インシデントを登録しました。")
    opened = [x for x in op.call("incidents.all")["incidents"] if x["title"] == "不審なログインの検知"]
    check(len(opened) == 1 and opened[0]["severity"] == "critical", f"opened: {opened}")
    age = time.time_ns() - int(opened[0]["detected"])
    check(0 <= age < 2 * 60 * 10**9, f"detected {age} ns ago: the JST input was not read as JST")
    wait_for(d, "the new incident listed",
             lambda d: d.find_element(By.CSS_SELECTOR, f'#incidents tr[data-incident="{opened[0]["incident"]}"]'))
    check([i for i in m.call("incidents.list")["incidents"] if i["incident"] == opened[0]["incident"]],
          "the master does not see the incident opened from the page")

    # Resolving the fresh incident: another operator updated it meanwhile, so
    # the page reloads and says so; resolved on the second try.
    fresh_sel = f'#incidents tr[data-incident="{ids["fresh"]}"]'
    d.find_element(By.CSS_SELECTOR, fresh_sel + ' [data-action="manage"]').click()
    wait_for(d, "the manage panel", lambda d: d.find_element(By.CSS_SELECTOR, '[data-action="resolve"]'))
    x = [x for x in op.call("incidents.all")["incidents"] if x["incident"] == ids["fresh"]][0]
    op.call("incidents.update", {"incident": ids["fresh"], "severity": "medium", "summary": "影響は限定的です。",
                                 "version": x["version"]})
    d.find_element(By.CSS_SELECTOR, '[data-action="resolve"]').click()
    wait_status(d, "他の操作で内容が変わっていたため、最新の状態を読み込み直しました。もう一度操作してください。")
    d.find_element(By.CSS_SELECTOR, fresh_sel + ' [data-action="manage"]').click()
    summary = wait_for(d, "the manage panel again", lambda d: d.find_element(By.CSS_SELECTOR, "textarea[name=summary]"))
    check(summary.get_attribute("value") == "影響は限定的です。", "the panel shows the summary as it was")
    summary.clear()
    summary.send_keys("表示遅延は解消しました。")
    d.find_element(By.CSS_SELECTOR, '[data-action="resolve"]').click()
    wait_status(d, "インシデントを解決済みにしました。")
    x = [x for x in op.call("incidents.all")["incidents"] if x["incident"] == ids["fresh"]][0]
    check(x["resolved"] is True and x["summary"] == "表示遅延は解消しました。", f"after resolve: {x}")
    shot(d, "operator-incident-resolved")

    goto(d, "tenants")
    row = wait_for(d, "tenant row", lambda d: d.find_element(By.CSS_SELECTOR, f'tr[data-tenant="{acc["tenant"]}"]'))
    check("利用中" in row.text, f"tenant row: {row.text}")
    shot(d, "operator-tenants")

    goto(d, "notices")
    f = d.find_element(By.CSS_SELECTOR, "main form")
    Select(f.find_element(By.NAME, "notice_kind")).select_by_value("maintenance")
    f.find_element(By.NAME, "title").send_keys("定期メンテナンスのお知らせ")
    f.find_element(By.NAME, "body").send_keys("12月20日 2:00〜4:00(日本時間)にメンテナンスを行います。")
    f.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait_status(d, "お知らせを配信しました。")
    wait_for(d, "the notice listed", lambda d: "定期メンテナンスのお知らせ" in d.find_element(By.ID, "notices").text)
    check([n for n in m.call("notices.list")["notices"] if n["title"] == "定期メンテナンスのお知らせ"],
          "the master does not see the published notice")
    shot(d, "operator-notices")

    # The overdue incident's alert: listed, acknowledged from the page.
    goto(d, "alerts")
    row = d.find_element(By.CSS_SELECTOR, f'#alerts tr[data-alert="{alert["alert"]}"]')
    check("インシデント通知期限超過" in row.text and " JST" in row.text, f"alert row: {row.text}")
    shot(d, "operator-alerts")
    row.find_element(By.CSS_SELECTOR, '[data-action="ack-alert"]').click()
    wait_status(d, "アラートを確認しました。")
    check(not [a for a in op.call("alerts.list", {"open_only": True})["alerts"] if a["alert"] == alert["alert"]],
          "the alert is still open")
    # The backup serve took at start (its time of day has passed), verified.
    gen = wait_for(d, "a backup generation", lambda _: op.call("backups.list")["generations"])
    goto(d, "backups")
    row = d.find_element(By.CSS_SELECTOR, "#backups tbody tr")
    check(gen[0]["verified"] is True and gen[0]["generation"] in row.text and "正常" in row.text
          and " JST" in row.text, f"backup row: {row.text} ({gen})")
    shot(d, "operator-backups")
    goto(d, "checkpoint")
    size = d.find_element(By.ID, "tree-size").text
    check(size.isdigit() and int(size) > 0, f"checkpoint size {size!r}")
    shot(d, "operator-checkpoint")
    operator_accounts(d, acc, op)
    d.find_element(By.ID, "logout").click()
    ready(d, "login")


def operator_accounts(d, acc, op):
    """The operators screen: the caller's own row has no actions; an operator
    made from the form is locked, unlocked and deleted from the page."""
    goto(d, "operators")
    me = op.call("auth.whoami")["account"]
    own = d.find_element(By.CSS_SELECTOR, f'#operators tr[data-account="{me}"]')
    check("(あなた)" in own.text and not own.find_elements(By.CSS_SELECTOR, "[data-action]"),
          f"own row: {own.text}")
    f = d.find_element(By.CSS_SELECTOR, "main form")
    f.find_element(By.NAME, "email").send_keys("night@demo.kiroku.example")
    f.find_element(By.NAME, "display_name").send_keys("夜間当番")
    f.find_element(By.NAME, "password").send_keys("correct horse battery staple")
    f.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait_status(d, "アカウントを作成しました。")
    sel = '#operators tr[data-email="night@demo.kiroku.example"]'
    row = wait_for(d, "the new operator listed", lambda d: d.find_element(By.CSS_SELECTOR, sel))
    check("夜間当番" in row.text and "有効" in row.text, f"new operator: {row.text}")
    row.find_element(By.CSS_SELECTOR, '[data-action="lock"]').click()
    wait_for(d, "the operator locked", lambda d: d.find_elements(By.CSS_SELECTOR, sel + ' [data-action="unlock"]'))
    check("オペレーターによる" in d.find_element(By.CSS_SELECTOR, sel).text, "lock reason not shown")
    o = {o["email"]: o for o in op.call("operators.list")["operators"]}["night@demo.kiroku.example"]
    check(o["locked"] is True and o["lock_reason"] == "operator", f"after lock: {o}")
    shot(d, "operator-accounts")
    d.find_element(By.CSS_SELECTOR, sel + ' [data-action="unlock"]').click()
    wait_for(d, "the operator unlocked", lambda d: d.find_elements(By.CSS_SELECTOR, sel + ' [data-action="lock"]'))
    d.find_element(By.CSS_SELECTOR, sel + ' [data-action="delete"]').click()
    d.switch_to.alert.accept()
    wait_for(d, "the operator deleted", lambda d: not d.find_elements(By.CSS_SELECTOR, sel))
    check(not [o for o in op.call("operators.list")["operators"] if o["email"] == "night@demo.kiroku.example"],
          "not deleted")


def user_flow(d, gw, acc):
    """The user the master made sees the screens its permissions allow."""
    browser_login(d, gw, acc["code"], "staff@demo.kiroku.example", "correct horse battery staple", "dashboard")
    menu = [a.get_attribute("data-screen") for a in d.find_elements(By.CSS_SELECTOR, "nav a")]
    check(menu == ["dashboard", "contacts"], f"a user's menu: {menu}")  # contacts.read only (audit.read revoked)
    d.get(gw + "/#/accounts")  # typed into the address bar: the dashboard instead
    wait_for(d, "the accounts screen refused", lambda d: d.current_url.endswith("#/dashboard"))
    check(not d.find_elements(By.ID, "users"), "a user sees the accounts")
    goto(d, "contacts")
    check(d.find_elements(By.CSS_SELECTOR, f'#contacts tbody tr'), "the user sees no contact")
    shot(d, "user-contacts")
    d.find_element(By.ID, "logout").click()
    ready(d, "login")


def auditor_flow(d, gw, acc, m, kiroku, data, downloads):
    m.call("users.create", {"email": "audit@demo.kiroku.example", "password": "correct horse battery staple",
                            "role": "auditor"})
    browser_login(d, gw, acc["code"], "audit@demo.kiroku.example", "correct horse battery staple", "timeline")
    items = wait_for(d, "timeline entries", lambda d: d.find_elements(By.CSS_SELECTOR, "ol.timeline li[data-seq]"))
    days = [h.text for h in d.find_elements(By.CSS_SELECTOR, "ol.timeline > li > h3")]
    check(days and all(re.match(r"^\d{4}-\d{2}-\d{2}$", x) for x in days), f"days: {days}")
    check(len(items) > 5, f"timeline has {len(items)} entries")
    shot(d, "auditor-timeline")
    goto(d, "audit-export")
    d.find_element(By.ID, "audit-export-run").click()
    wait_status(d, "tenant-export-1.json をダウンロードしました。")
    path = os.path.join(downloads, "tenant-export-1.json")
    wait_for(d, "the downloaded export", lambda d: os.path.exists(path) and os.path.getsize(path) > 0)
    cmd = d.find_element(By.ID, "verify-command").text
    check(cmd.startswith("kiroku audit verify tenant-export-1.json --pubkey"), f"command: {cmd}")
    shot(d, "auditor-export")
    pub = open(os.path.join(data, "keys", "journal-1.pub")).read().strip()
    v = subprocess.run([kiroku, "audit", "verify", path, "--pubkey", pub], capture_output=True, text=True,
                       timeout=WAIT_S)
    check(v.returncode == 0 and v.stdout.startswith("ok"), f"audit verify: {v.returncode} {v.stdout} {v.stderr}")
    d.find_element(By.ID, "logout").click()
    ready(d, "login")


def main():
    global ARTIFACTS
    if len(sys.argv) != 3:
        print("usage: console_test.py KIROKU_BIN ARTIFACTS_DIR", file=sys.stderr)
        return 2
    kiroku, ARTIFACTS = sys.argv[1], sys.argv[2]
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    os.makedirs(ARTIFACTS)
    global DOWNLOADS
    tmp = tempfile.mkdtemp(prefix="kr_console_")
    downloads = DOWNLOADS = os.path.join(tmp, "downloads")
    os.makedirs(downloads)
    server = driver = None
    logs = []
    try:
        server, data, urls = start_server(kiroku, tmp)
        gw, gwop = urls["gateway"], urls["gateway_operator"]
        acc = demo_accounts(data)
        op, m, ids = seed(gw, gwop, acc)
        driver = make_driver(downloads)
        master_flow(driver, gw, gwop, acc, op, m, ids)
        operator_flow(driver, gwop, acc, ids, m, op)
        user_flow(driver, gw, acc)
        auditor_flow(driver, gw, acc, m, kiroku, data, downloads)
        bad = console_errors(driver, logs)
        check(not bad, "browser console: " + " | ".join(bad))
        # serve stops cleanly (under the sanitizers: nothing leaked or misused)
        server.send_signal(signal.SIGTERM)
        rc = server.wait(timeout=WAIT_S)
        check(rc == 0, f"serve exited {rc} on SIGTERM")
        print("console_test: all passed")
        return 0
    except Exception as e:  # an assertion, or the server or browser gone
        print(f"console_test: FAILED: {type(e).__name__}: {e}", file=sys.stderr)
        if driver:
            console_errors(driver, logs)
        for e2 in logs:
            print(f"  browser: {e2.get('level')} {e2.get('message')}", file=sys.stderr)
        if server:
            try:
                print(f"serve: exit {server.poll()}", file=sys.stderr)
                print(open(os.path.join(tmp, "serve.err")).read()[-3000:], file=sys.stderr)
            except OSError:
                pass
        return 1
    finally:
        print("screenshots:")
        for s in shots:
            print(f"  {s}")
        if driver:
            driver.quit()
        if server and server.poll() is None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=WAIT_S)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
