"""Shared fixtures: small named landing folders written on the fly, and a store to load them into."""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")

from trace24.schemas.contracts import SCHEMAS_DIR, load_schemas
from trace24.transforms import database, normalise
from trace24.transforms.ingest import landing, load

PROJECT = Path(__file__).resolve().parent.parent

LAB_HEADER = ["样本编号", "姓名", "身份证号", "联系电话", "采样时间", "报告时间", "检测机构", "检测结果", "Ct值ORF1ab",
              "Ct值N", "送检原因"]


def write_csv(path: Path, header: list[str], rows: list[list[str]], encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding=encoding, newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    return path


def lab_row(sample_id="S1", name="张伟", id_number="11010519491231002X", phone="13800138000",
            sampled="2020-02-03 09:00:00", reported="2020-02-03 20:00:00", result="阳性", reason="密接",
            ct="25.5"):
    return [sample_id, name, id_number, phone, sampled, reported, "市疾控", result, ct, ct, reason]


SAMPLE = PROJECT / "data" / "sample"
BIN = Path(sys.executable).parent
DAY_1 = "2020-02-14"   # as of the end of the sample's fourth delivery day (of five)


@dataclass(frozen=True)
class PrefectServer:
    api_url: str
    home: Path


def environment(server: PrefectServer, **extra) -> dict:
    """The environment of a trace24 process that reports to ``server``, logging at INFO."""
    return {**os.environ, "PREFECT_HOME": str(server.home), "PREFECT_API_URL": server.api_url,
            "PREFECT_LOGGING_LEVEL": "INFO", "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "NO_COLOR": "1",
            "COLUMNS": "200", **extra}


def sample_run_command(folder: Path, as_of: str) -> list[str]:
    return [str(BIN / "trace24"), "run", "--landing", str(SAMPLE / "landing"), "--db", str(folder / "t.duckdb"),
            "--out", str(folder / "lists"), "--as-of", f"{as_of}T00:00", "--no-validate"]


def run_sample(folder: Path, as_of: str, server: PrefectServer) -> str:
    done = subprocess.run(sample_run_command(folder, as_of), env=environment(server), capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    return done.stdout + done.stderr


def api_call(url: str, body: dict | None = None):
    """GET (or POST ``body`` to) the Prefect server's REST API."""
    request = urllib.request.Request(url, data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Content-Type": "application/json"}, method="POST" if body else "GET")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def stop(process: subprocess.Popen) -> None:
    """Stop a process started in a session of its own, and its children: politely, then for sure."""
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory):
    """One `prefect server start` on a free local port for the runs started as processes of their own,
    as in production (each run would otherwise start a temporary server of its own)."""
    home = tmp_path_factory.mktemp("prefect_server")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = PrefectServer(f"http://127.0.0.1:{port}/api", home)
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_SERVER_UI_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    log = home / "server.log"
    process = subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                               env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                api_call(f"{server.api_url}/health")
                break
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(1)
        yield server
    finally:
        stop(process)


@pytest.fixture(scope="session")
def sample_day_1(tmp_path_factory, prefect_server) -> tuple[Path, str]:
    """`trace24 run` on the sample city as of the end of its fourth delivery day, from an empty store:
    the folder (store, lists, snapshot) and what the run printed and logged at INFO."""
    folder = tmp_path_factory.mktemp("sample_day_1")
    return folder, run_sample(folder, DAY_1, prefect_server)


@pytest.fixture(scope="session")
def prefect_engine():
    """One temporary Prefect server for every test that runs a flow (it takes seconds to start)."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    # Prefect's default 30 s for the server to start was exceeded once on a busy shared machine
    # (every flow test then errored); the wait ends as soon as the server answers.
    with prefect_test_harness(server_startup_timeout=120), \
            temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield


def feeds_by_agency(schemas):
    grouped: dict[str, list[str]] = {}
    for contract in schemas.feeds.values():
        grouped.setdefault(contract.agency, []).append(contract.feed)
    return grouped


def ingest_landing(landing_dir: Path, db_path: Path, schemas_dir: Path | None = None) -> list[load.FileOutcome]:
    """The ingest flow's steps without the Prefect engine (the flow itself is tested separately)."""
    schemas = load_schemas(schemas_dir)
    files, unknown = landing.discover(landing_dir, feeds_by_agency(schemas))
    con = database.connect(db_path, schemas)
    try:
        run_id = load.start_run(con, landing_dir)
        load.record_warnings(con, run_id, load.missing_feeds(schemas, landing_dir, files), unknown)
        outcomes = load.ingest_files(con, schemas, files, run_id, load.archive_dir_for(db_path))
        load.finish_run(con, run_id, outcomes)
        return outcomes
    finally:
        con.close()


@pytest.fixture
def day1(tmp_path) -> Path:
    """The landing folder of one delivery day, 2020-02-10."""
    folder = tmp_path / "landing" / "2020-02-10"
    folder.mkdir(parents=True)
    return folder


@pytest.fixture
def schemas_copy(tmp_path) -> Path:
    """A copy of the shipped contracts folder (the YAML only), to change in a test."""
    target = tmp_path / "schemas"
    shutil.copytree(SCHEMAS_DIR, target, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    return target


@pytest.fixture
def db_path(tmp_path) -> Path:
    return tmp_path / "store.duckdb"


def query(db_path: Path, sql: str, params=None) -> list[tuple]:
    with duckdb.connect(str(db_path), read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


@pytest.fixture(scope="session")
def sql():
    """An in-memory DuckDB with the normalisers installed: sql(expr, *params) -> value."""
    con = duckdb.connect()
    normalise.register(con)

    def evaluate(expression: str, *params):
        row = con.execute(f"SELECT {expression}", list(params)).fetchone()
        return row[0] if len(row) == 1 else row

    yield evaluate
    con.close()


DAY = dt.date(2020, 2, 10)


def link_store(db_path: Path, review_csv: Path | None = None, reviewed_pairs: Path | None = None) -> dict:
    """The identity flow's steps without the Prefect engine (the flow itself is tested separately)."""
    from trace24.transforms.persons import community, identity, linkage

    schemas = load_schemas()
    profile = linkage.load_profile()
    con = database.connect(db_path, schemas)
    try:
        database.in_transaction(con, identity.ensure_tables, con)
        identity.add_identity_records(con, schemas)
        identity.link_exact(con)
        reviewed = linkage.read_reviewed_pairs(reviewed_pairs)
        plan = linkage.plan_linkage(con, profile, reviewed)
        if plan.is_needed:
            linkage.score_pairs(con, profile)
        outcome = linkage.resolve(con, profile, reviewed) if plan.is_needed else linkage.stored_outcome(con)
        linkage.store_profiles(con, plan)
        scope = identity.refresh_scope(con, plan.is_needed)
        community.assign_communities(con, profile.auto_link, scope.changed_only)
        identity.build_persons(con, scope.changed_only)
        identity.finish_refresh(con, scope)
        if review_csv is not None:
            linkage.export_review(con, review_csv)
        return {"linkage": outcome, "plan": plan, "scope": scope}
    finally:
        con.close()


def trace_store(db_path: Path, profile: str = "nhc-v6"):
    """The exposure flow's steps without the Prefect engine; returns the run's plan."""
    from trace24.schemas.rules import load_facilities, load_rule_profile
    from trace24.transforms.contacts import exposures

    rules, facilities = load_rule_profile(profile), load_facilities()
    con = database.connect(db_path, load_schemas())
    try:
        as_of = exposures.default_as_of(con)
        params = exposures.rule_parameters(rules, facilities, as_of)
        plan = exposures.plan_exposures(con, rules, facilities, as_of)
        exposures.build_cases(con, params)
        exposures.build_exposures(con, rules, params, plan)
        exposures.record_run(con, rules, as_of, plan)
        return plan
    finally:
        con.close()
