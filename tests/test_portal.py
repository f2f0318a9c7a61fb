"""The portal as its users meet it, over the sample city's run (sample_day_1): an office sees and
downloads its own list and nothing else; every route answers 404 outside an account's scope (the
route table is walked, so a new route without the check fails here); sessions, CSRF, rate limits,
headers, the access log and uploads."""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from trace24.portal.accounts import MAX_FAILURES, Accounts
from trace24.portal.app import PortalConfig, create_app

PASSWORD = "correct horse battery"
ID_NUMBER = re.compile(r"\b\d{17}[\dXx]\b")
# Routes anyone may reach: they show nothing of a community.
PUBLIC = {"/login", "/logout", "/", "/static"}


@pytest.fixture(scope="module")
def city(sample_day_1, tmp_path_factory):
    """The run's communities as the tests need them: two offices of one street with people on their
    lists (A and B), and a community, street and district outside A's."""
    folder, _ = sample_day_1
    with duckdb.connect(str(folder / "t_read.duckdb"), read_only=True) as con:
        as_of = con.execute("SELECT as_of FROM snapshot_info").fetchone()[0]
        listed = con.execute("""SELECT c.community_code, c.street, c.district, count(*) AS n
                                FROM out_list_rows AS r JOIN out_communities AS c USING (community_code)
                                WHERE r.as_of = ? GROUP BY ALL ORDER BY c.community_code""", [as_of]).fetchall()
        names = {code: {row[0][2] for row in con.execute(
            "SELECT row_values FROM out_list_rows WHERE as_of = ? AND community_code = ?", [as_of, code]).fetchall()}
            for code, *_ in listed}
        files = dict(con.execute("SELECT community_code, any_value(list_file) FROM out_list_rows WHERE as_of = ? "
                                 "GROUP BY ALL", [as_of]).fetchall())
        keys = dict(con.execute("SELECT community_code, min(row_key) FROM out_list_rows WHERE as_of = ? "
                                "GROUP BY ALL", [as_of]).fetchall())
        unplaced = con.execute("SELECT count(*) FROM out_list_rows WHERE as_of = ? AND community_code IS NULL "
                               "AND district = ?", [as_of, listed[0][2]]).fetchone()[0]
    a = listed[0]
    b = next(row for row in listed[1:] if row[0][:9] == a[0][:9])
    other_district = next(row for row in listed if row[2] != a[2])
    return {"folder": folder, "as_of": as_of, "a": a[0], "b": b[0], "street": a[0][:9], "district": a[2],
            "other_street": other_district[0][:9], "other_district": other_district[2], "names": names,
            "files": files, "keys": keys, "unplaced": unplaced}


@pytest.fixture
def portal(city, tmp_path):
    folder = city["folder"]
    accounts = Accounts(tmp_path / "portal.sqlite")
    for username, role, scope in (("office-a", "office", city["a"]), ("office-b", "office", city["b"]),
                                  ("street-a", "street", city["street"]), ("district-a", "district", city["district"]),
                                  ("city", "city", None), ("epi", "epidemiologist", None)):
        accounts.add_user(username, role, scope, PASSWORD)
    config = PortalConfig(snapshot=folder / "t_read.duckdb", lists_dir=folder / "lists",
                          accounts=tmp_path / "portal.sqlite", landing_dir=tmp_path / "landing")
    return create_app(config), config


def client(app) -> TestClient:
    return TestClient(app, base_url="https://testserver", follow_redirects=False)


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html)[1]


def office_a_on(snapshot: Path, city: dict, tmp_path: Path) -> TestClient:
    """Office a, logged in to a portal serving ``snapshot`` (a test's own changed copy)."""
    Accounts(tmp_path / "portal.sqlite").add_user("office-a", "office", city["a"], PASSWORD)
    app = create_app(PortalConfig(snapshot=snapshot, lists_dir=city["folder"] / "lists",
                                  accounts=tmp_path / "portal.sqlite"))
    return logged_in(app, "office-a")[0]


def logged_in(app, username: str) -> tuple[TestClient, str]:
    browser = client(app)
    form = browser.get("/login")
    answer = browser.post("/login", data={"username": username, "password": PASSWORD,
                                          "csrf_token": csrf_of(form.text)})
    assert answer.status_code == 303, answer.text
    home = browser.get(answer.headers["location"])
    return browser, csrf_of(home.text)


def test_an_office_sees_only_its_residents_masked_and_downloads_its_delivered_list(city, portal):
    app, config = portal
    browser, _ = logged_in(app, "office-a")
    page = browser.get(f"/c/{city['a']}")
    assert page.status_code == 200
    assert city["as_of"].strftime("%Y-%m-%d %H:%M") in page.text          # which run the page shows
    cells = set(re.findall(r"<td>(?:<a [^>]*>)?([^<]*)(?:</a>)?</td>", page.text))
    assert city["names"][city["a"]] <= cells
    assert not (city["names"][city["b"]] - city["names"][city["a"]]) & cells   # no neighbour's resident
    assert not ID_NUMBER.search(page.text)                                 # ID numbers masked
    delivered = config.lists_dir / city["as_of"].strftime("%Y-%m-%d") / city["files"][city["a"]]
    csv_file = browser.get(f"/c/{city['a']}/list.csv")
    assert csv_file.status_code == 200 and csv_file.content == delivered.read_bytes()
    workbook = browser.get(f"/c/{city['a']}/list.xlsx")
    assert workbook.content == delivered.with_suffix(".xlsx").read_bytes()
    # Filters narrow the rows shown; the page still counts the whole list.
    assert browser.get(f"/c/{city['a']}", params={"category": "confirmed", "grid": "no-such-grid"}).text.count(
        '<tr class="status-') == 0


def foreign_values(city) -> dict[str, str]:
    """For each path parameter, a value that exists in the city and lies outside office A's scope."""
    return {"community_code": city["b"], "street_code": city["other_street"], "district": city["other_district"],
            "row_key": city["keys"][city["b"]]}


def test_every_route_answers_404_outside_the_accounts_scope(city, portal):
    """Walks the application's route table: every route but the public ones, asked by office A for
    another community, street or district (or a page of another role), answers 404, the same page as
    for something that does not exist."""
    app, _ = portal
    browser, csrf = logged_in(app, "office-a")
    missing_page = browser.get("/c/999999999999").text
    foreign = foreign_values(city)
    walked = []
    for route in app.routes:
        if not isinstance(route, APIRoute) or route.path in PUBLIC:
            continue
        params = re.findall(r"{(\w+)}", route.path)
        unknown = [p for p in params if p not in foreign]
        assert not unknown, f"{route.path}: add a foreign value for {unknown} to this test"
        path = route.path.format(**foreign)
        for method in route.methods:
            if method == "GET":
                answer = browser.get(path)
            else:
                answer = browser.post(path, data={"csrf_token": csrf},
                                      files={"answered": ("a.csv", b"\xe5\x9b\x9e\xe6\x89\xa7\xe7\xbc\x96\xe5\x8f\xb7\n")})
            assert answer.status_code == 404, f"{method} {path}: {answer.status_code}"
            assert answer.text == missing_page
            walked.append(route.path)
    assert {"/c/{community_code}", "/c/{community_code}/p/{row_key}", "/c/{community_code}/returns",
            "/d/{district}", "/city"} <= set(walked)
    # A neighbour's person under one's own community's path is not there either.
    assert browser.get(f"/c/{city['a']}/p/{city['keys'][city['b']]}").text == missing_page


def test_each_role_reaches_what_its_scope_holds(city, portal):
    app, _ = portal
    street, _ = logged_in(app, "street-a")
    assert street.get(f"/c/{city['b']}").status_code == 200                # a community of its street
    assert street.get(f"/d/{city['district']}").status_code == 404          # not its district's dashboard
    district, _ = logged_in(app, "district-a")
    dashboard = district.get(f"/d/{city['district']}")
    assert dashboard.status_code == 200 and "compliance.svg" in dashboard.text
    assert district.get(f"/d/{city['district']}/compliance.svg").headers["content-type"] == "image/svg+xml"
    assert district.get(f"/d/{city['other_district']}").status_code == 404
    city_command, _ = logged_in(app, "city")
    assert city_command.get(f"/d/{city['other_district']}").status_code == 200
    epi, _ = logged_in(app, "epi")
    figures = epi.get("/epi")
    assert figures.status_code == 200 and epi.get(f"/c/{city['a']}").status_code == 404
    every_name = set().union(*city["names"].values())
    assert not every_name & set(re.findall(r"<td>([^<]*)</td>", figures.text))   # pseudonymous: no names


def test_a_session_needs_a_password_a_cookie_and_a_form_token(city, portal):
    import sqlite3

    app, config = portal
    anonymous = client(app)
    assert anonymous.get(f"/c/{city['a']}").headers["location"] == "/login"
    browser = client(app)
    form = browser.get("/login")
    answer = browser.post("/login", data={"username": "office-a", "password": PASSWORD,
                                          "csrf_token": csrf_of(form.text)})
    set_cookie = answer.headers["set-cookie"].lower()
    assert "t24_session=" in set_cookie and all(flag in set_cookie for flag in ("httponly", "secure",
                                                                                 "samesite=strict"))
    page = browser.get(f"/c/{city['a']}")
    assert page.headers["cache-control"] == "no-store"
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert "script-src" not in page.headers["content-security-policy"]     # no script at all
    csrf = csrf_of(page.text)
    assert browser.post("/logout", data={"csrf_token": "forged"}).status_code == 403   # a form needs its token
    old_cookie = browser.cookies.get("t24_session")
    assert browser.post("/logout", data={"csrf_token": csrf}).status_code == 303
    replay = client(app)
    replay.cookies.set("t24_session", old_cookie)
    assert replay.get(f"/c/{city['a']}").status_code == 303                  # the old cookie opens nothing now
    assert client(app).post("/login", data={"username": "office-a", "password": PASSWORD,
                                            "csrf_token": "x"}).status_code == 403    # no login form, no login
    with sqlite3.connect(config.accounts) as con:
        hashes = [h for (h,) in con.execute("SELECT password_hash FROM users")]
    assert all(h.startswith("$argon2id$") and PASSWORD not in h for h in hashes)


def test_logins_are_refused_after_repeated_failures(portal):
    app, _ = portal
    browser = client(app)
    for _ in range(MAX_FAILURES):
        form = browser.get("/login")
        wrong = browser.post("/login", data={"username": "office-a", "password": "wrong password!",
                                             "csrf_token": csrf_of(form.text)})
        assert wrong.status_code == 401
    form = browser.get("/login")
    locked = browser.post("/login", data={"username": "office-a", "password": PASSWORD,
                                          "csrf_token": csrf_of(form.text)})
    assert locked.status_code == 429


def test_every_view_and_download_is_in_the_access_log_only_the_city_reads(city, portal):
    app, _ = portal
    office, _ = logged_in(app, "office-a")
    office.get(f"/c/{city['a']}/list.csv")
    office.get(f"/c/{city['b']}")
    assert office.get("/access-log").status_code == 404
    city_command, _ = logged_in(app, "city")
    log = city_command.get("/access-log").text
    assert re.search(rf"office-a</td><td>office</td><td>GET</td><td>/c/{{community_code}}/list.csv</td>"
                     rf"<td>{city['a']}</td><td>200", log)
    assert re.search(rf"office-a</td><td>office</td><td>GET</td><td>/c/{{community_code}}</td>"
                     rf"<td>{city['b']}</td><td>404", log)                  # the attempt is kept too


def test_an_office_uploads_its_answered_list_into_the_next_runs_landing(city, portal):
    app, config = portal
    browser, csrf = logged_in(app, "office-a")
    workbook = browser.get(f"/c/{city['a']}/list.xlsx").content
    done = browser.post(f"/c/{city['a']}/returns", data={"csrf_token": csrf},
                        files={"answered": ("../../evil.xlsx", workbook)})
    assert done.status_code == 200
    landed = sorted((config.landing_dir / city["as_of"].strftime("%Y-%m-%d") / "community").iterdir())
    assert [p.read_bytes() for p in landed] == [workbook]
    assert re.fullmatch(rf"list_returns_{city['a']}_portal\d{{8}}T\d{{6}}[0-9a-f]{{4}}\.xlsx", landed[0].name)
    refused = browser.post(f"/c/{city['a']}/returns", data={"csrf_token": csrf},
                           files={"answered": ("list.xlsx", b"MZ\x90\x00 not a workbook")})
    assert refused.status_code == 400
    too_big = browser.post(f"/c/{city['a']}/returns", data={"csrf_token": csrf},
                           files={"answered": ("list.csv", "回执编号\n".encode() + b"x" * (6 * 1024 * 1024))})
    assert too_big.status_code == 413
    assert len(list(landed[0].parent.iterdir())) == 1


def test_the_sample_accounts_cover_every_role(city, tmp_path):
    from trace24.portal.accounts import sample_accounts
    from trace24.portal.snapshot_reader import Snapshot

    _, _, directory, _ = Snapshot(city["folder"] / "t_read.duckdb").state()
    accounts = Accounts(tmp_path / "p.sqlite")
    made = sample_accounts(accounts, list(directory.values()))
    assert {role for _, role, _, _ in made} == {"office", "street", "district", "city", "epidemiologist"}
    assert sample_accounts(accounts, list(directory.values())) == []      # made once


def test_an_office_opens_a_person_of_its_list_with_what_it_answered(city, tmp_path):
    """From the list, the person's page: the row as delivered, the office's answers to it and the
    days it was checked, with no temperature or symptom. The snapshot is the run's, with one
    accepted answer and one check added as a later run would publish them."""
    import shutil

    key = city["keys"][city["a"]]
    snapshot = tmp_path / "t_read.duckdb"
    shutil.copy(city["folder"] / "t_read.duckdb", snapshot)
    with duckdb.connect(str(snapshot)) as con:
        con.execute("""INSERT INTO core_followup_history (row_key, community_code, answer, controlled_at,
                           delivery_date, load_id, source_row_number, is_current)
                       VALUES (?, ?, '已集中隔离', TIMESTAMP '2020-02-14 18:05', DATE '2020-02-14', 9001, 1, true)""",
                    [key, city["a"]])
        con.execute("""INSERT INTO core_health_checks (row_key, community_code, check_date, temperature_c,
                           observation_status, reporter_kind, load_id, source_row_number)
                       VALUES (?, ?, DATE '2020-02-14', 38.6, '继续观察', 'facility', 9002, 1)""", [key, city["a"]])
    browser = office_a_on(snapshot, city, tmp_path)
    assert f'href="/c/{city["a"]}/p/{key}"' in browser.get(f"/c/{city['a']}").text
    person = browser.get(f"/c/{city['a']}/p/{key}")
    assert person.status_code == 200 and key in person.text
    assert re.search(r"<td>2020-02-14</td><td>已集中隔离</td><td>2020-02-14 18:05:00</td>", person.text)
    assert re.search(r"<td>2020-02-14</td><td>继续观察</td><td>隔离点</td>", person.text)
    assert "38.6" not in person.text and not ID_NUMBER.search(person.text)


def test_the_list_table_escapes_every_cell_and_filters_by_grid(city, tmp_path):
    """The office's table is made in the database: a cell that reads as markup shows as text, and a
    grid filter keeps that grid's rows only."""
    import shutil

    snapshot = tmp_path / "t_read.duckdb"
    shutil.copy(city["folder"] / "t_read.duckdb", snapshot)
    hostile = "<b onclick=\"x\">李&'"
    with duckdb.connect(str(snapshot)) as con:
        con.execute("""UPDATE out_list_rows SET row_values = list_transform(row_values, lambda v, i:
                           CASE WHEN i = 3 THEN ? ELSE v END)
                       WHERE row_key = ? AND as_of = ?""", [hostile, city["keys"][city["a"]], city["as_of"]])
        grids = con.execute("""SELECT row_values[8], count(*) FROM out_list_rows
                               WHERE as_of = ? AND community_code = ? AND row_values[8] <> ''
                               GROUP BY ALL ORDER BY 1""", [city["as_of"], city["a"]]).fetchall()
    browser = office_a_on(snapshot, city, tmp_path)
    page = browser.get(f"/c/{city['a']}").text
    assert "&lt;b onclick=&#34;x&#34;&gt;李&amp;&#39;" in page and "<b onclick" not in page
    grid, count = grids[0]
    filtered = browser.get(f"/c/{city['a']}", params={"grid": grid}).text
    table = filtered.split('<table id="list">')[1]
    assert table.count("<tr class=") == count
    cell = r"<td>(?:<a [^>]*>)?[^<]*(?:</a>)?</td>"
    assert re.findall(rf'<tr class="status-\w+">(?:{cell}){{7}}<td>([^<]*)</td>', table) == [grid] * count


def test_the_lists_made_ahead_are_the_lists_made_on_demand(city):
    """What a worker makes for every office when a snapshot opens equals what a visit makes."""
    from trace24.portal.snapshot_reader import Snapshot, every_list_table, list_table

    cur, info, directory, _ = Snapshot(city["folder"] / "t_read.duckdb").state()
    ahead = every_list_table(cur, info.as_of)
    assert set(ahead) == {code for code, *_ in cur.execute(
        "SELECT DISTINCT community_code FROM out_list_rows WHERE as_of = ? AND community_code IS NOT NULL",
        [info.as_of]).fetchall()}
    for code in directory:
        assert ahead.get(code, list_table(cur, info.as_of, "000000000000", "", "")) == list_table(
            cur, info.as_of, code, "", "")


# Which roles open each route with values of their own scope (200); every other role gets 404.
LIST_ROLES = {"office-a", "street-a", "district-a", "city"}
ACCESS = {
    ("GET", "/c/{community_code}"): LIST_ROLES,
    ("GET", "/c/{community_code}/list.csv"): LIST_ROLES,
    ("GET", "/c/{community_code}/list.xlsx"): LIST_ROLES,
    ("GET", "/c/{community_code}/p/{row_key}"): LIST_ROLES,
    ("POST", "/c/{community_code}/returns"): {"office-a"},
    ("GET", "/s/{street_code}"): {"street-a", "district-a", "city"},
    ("GET", "/d/{district}"): {"district-a", "city"},
    ("GET", "/d/{district}/unplaced.csv"): {"district-a", "city"},
    ("GET", "/d/{district}/compliance.svg"): {"district-a", "city"},
    ("GET", "/d/{district}/curve.svg"): {"district-a", "city"},
    ("GET", "/city"): {"city"},
    ("GET", "/access-log"): {"city"},
    ("GET", "/epi"): {"epi", "city"},
    ("GET", "/epi/curve.svg"): {"epi", "city"},
    ("GET", "/epi/compliance.svg"): {"epi", "city"},
}


def test_every_route_and_role_within_its_own_scope(city, portal):
    """Each role asks every route with values of office A's community, street and district: the
    roles the table names get the page, the others the 404 page. A route missing from the table
    fails the test."""
    app, _ = portal
    own = {"community_code": city["a"], "street_code": city["street"], "district": city["district"],
           "row_key": city["keys"][city["a"]]}
    routes = {(method, route.path) for route in app.routes if isinstance(route, APIRoute) and route.path not in PUBLIC
              for method in route.methods}
    assert routes == set(ACCESS), "add the route to ACCESS"
    workbook = None
    for username in ("office-a", "street-a", "district-a", "city", "epi"):
        browser, csrf = logged_in(app, username)
        for (method, path), allowed in sorted(ACCESS.items()):
            url = path.format(**own)
            if method == "GET":
                answer = browser.get(url)
            else:
                workbook = workbook or logged_in(app, "office-a")[0].get(f"/c/{city['a']}/list.xlsx").content
                answer = browser.post(url, data={"csrf_token": csrf}, files={"answered": ("a.xlsx", workbook)})
            expected = 200 if username in allowed else 404
            if path.endswith("unplaced.csv") and not city["unplaced"]:
                expected = 404    # no unplaced person in the district today: no such file
            assert answer.status_code == expected, f"{username} {method} {url}: {answer.status_code}"


def test_a_new_snapshot_renamed_in_is_served_at_the_next_request(city, tmp_path):
    """A run renames its new snapshot over the old one while the portal serves: the next page is the
    new run's (its as-of time, its list), nothing kept from the old file."""
    import datetime as dt
    import os
    import shutil

    snapshot = tmp_path / "t_read.duckdb"
    shutil.copy(city["folder"] / "t_read.duckdb", snapshot)
    browser = office_a_on(snapshot, city, tmp_path)
    before = browser.get(f"/c/{city['a']}").text
    assert city["as_of"].strftime("%Y-%m-%d %H:%M") in before
    later = city["as_of"] + dt.timedelta(days=1)
    fresh = tmp_path / "next.duckdb"
    shutil.copy(city["folder"] / "t_read.duckdb", fresh)
    with duckdb.connect(str(fresh)) as con:
        con.execute("UPDATE snapshot_info SET as_of = ?", [later])
        con.execute("""UPDATE out_list_rows SET as_of = ?, row_values = list_transform(row_values, lambda v, i:
                           CASE WHEN i = 3 THEN '新的一天' ELSE v END)
                       WHERE as_of = ? AND community_code = ?""", [later, city["as_of"], city["a"]])
    os.replace(fresh, snapshot)
    after = browser.get(f"/c/{city['a']}").text
    assert later.strftime("%Y-%m-%d %H:%M") in after and "新的一天" in after
    assert not city["names"][city["a"]] & set(re.findall(r"<td>(?:<a [^>]*>)?([^<]*)(?:</a>)?</td>", after))
