"""The ingest flow and the command line, run through the Prefect engine."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from tests.conftest import LAB_HEADER, lab_row, query, write_csv


def test_ingest_flow_loads_validates_and_reports(prefect_engine, day1, db_path):
    from trace24.flows.ingest import ingest_flow

    write_csv(day1 / "cdc" / "lab_results.csv", LAB_HEADER, [lab_row("S1"), lab_row("S2", result="")])
    result = ingest_flow(landing_dir=day1.parent, db_path=db_path)
    assert [(f["source_file"], f["status"], f["rows_loaded"], f["rows_quarantined"]) for f in result["files"]] == [
        ("2020-02-10/cdc/lab_results.csv", "loaded", 1, 1)]
    assert Path(result["data_docs"]).is_file()
    assert query(db_path, "SELECT validation_passed FROM load_audit") == [(True,)]
    failed = query(db_path, "SELECT count(*) FROM validation_results WHERE NOT success")
    assert failed == [(0,)]
    assert "no place_scans file delivered on 2020-02-10" in result["warnings"]


def test_cli_prints_the_audit_and_skips_on_rerun(prefect_engine, day1, db_path):
    from trace24.cli import app

    write_csv(day1 / "cdc" / "lab_results.csv", LAB_HEADER, [lab_row("S1")])
    runner = CliRunner()
    first = runner.invoke(app, ["ingest", "--landing", str(day1.parent), "--db", str(db_path), "--no-validate"])
    assert first.exit_code == 0, first.output
    assert "lab_results.csv" in first.output and "load_audit, run 1" in first.output
    second = runner.invoke(app, ["ingest", "--landing", str(day1.parent), "--db", str(db_path), "--no-validate"])
    assert second.exit_code == 0, second.output
    assert "1 files were loaded by an earlier run" in second.output


def test_cli_stops_on_a_broken_configuration(day1, db_path, tmp_path):
    from trace24.cli import app

    (tmp_path / "bad" / "feeds").mkdir(parents=True)
    (tmp_path / "bad" / "feeds" / "lab_results.yaml").write_text("feed: lab_results\nagency: nobody\n")
    write_csv(day1 / "cdc" / "lab_results.csv", LAB_HEADER, [lab_row("S1")])
    result = CliRunner().invoke(app, ["ingest", "--landing", str(day1.parent), "--db", str(db_path),
                                      "--schemas", str(tmp_path / "bad")])
    assert result.exit_code == 2
    assert "Configuration error" in result.output and "lab_results.yaml" in result.output
    assert not db_path.exists()


def test_link_cli_resolves_persons_and_writes_the_review_queue(prefect_engine, day1, db_path):
    from trace24.cli import app

    write_csv(day1 / "cdc" / "lab_results.csv", LAB_HEADER, [
        lab_row("S1"), lab_row("S2", id_number=""), lab_row("S3", name="李娜", id_number="440524188001010014",
                                                            phone="13900139000")])
    runner = CliRunner()
    assert runner.invoke(app, ["ingest", "--landing", str(day1.parent), "--db", str(db_path),
                               "--no-validate"]).exit_code == 0
    result = runner.invoke(app, ["link", "--db", str(db_path)])
    assert result.exit_code == 0, result.output
    assert "persons" in result.output and (db_path.parent / "link_review.csv").is_file()
    # Wiring only: three records, each linked once; accuracy needs a city (tests/test_identity.py).
    links = query(db_path, "SELECT source_row_number, link_method FROM person_records ORDER BY 1")
    assert [row for row, _ in links] == [1, 2, 3]
    assert links[0][1] == links[2][1] == "exact_id"
    assert query(db_path, "SELECT count(*) FROM persons WHERE assignment_method = 'unassigned'")[0][0] >= 2


def test_identity_flow_failing_half_way_leaves_the_previous_persons(prefect_engine, day1, db_path, monkeypatch):
    from trace24.flows.identity import identity_flow
    from trace24.transforms.persons import community

    write_csv(day1 / "cdc" / "lab_results.csv", LAB_HEADER, [lab_row("S1")])
    from tests.conftest import ingest_landing

    ingest_landing(day1.parent, db_path)
    identity_flow(db_path=db_path, review_csv=db_path.parent / "review.csv")
    before = query(db_path, "SELECT * FROM persons ORDER BY person_id")
    write_csv(day1.parent / "2020-02-11" / "cdc" / "lab_results.csv", LAB_HEADER,
              [lab_row("S2", name="李娜", id_number="440524188001010014", phone="13900139000")])
    ingest_landing(day1.parent, db_path)

    def broken(con, certain_at, changed_only):
        raise RuntimeError("disk full")

    monkeypatch.setattr(community, "assign_communities", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        identity_flow(db_path=db_path, review_csv=db_path.parent / "review.csv")
    assert query(db_path, "SELECT * FROM persons ORDER BY person_id") == before


def test_exposures_cli_records_the_profile_and_a_failed_run_changes_nothing(prefect_engine, day1, db_path,
                                                                            monkeypatch):
    from trace24.cli import app
    from trace24.transforms.contacts import contact_graph

    write_csv(day1 / "cdc" / "lab_results.csv", LAB_HEADER, [lab_row("S1")])
    runner = CliRunner()
    assert runner.invoke(app, ["ingest", "--landing", str(day1.parent), "--db", str(db_path),
                               "--no-validate"]).exit_code == 0
    assert runner.invoke(app, ["link", "--db", str(db_path)]).exit_code == 0
    result = runner.invoke(app, ["exposures", "--db", str(db_path), "--profile", "nhc-v8"])
    assert result.exit_code == 0, result.output
    assert "cases" in result.output
    assert query(db_path, "SELECT profile FROM exposure_runs") == [("nhc-v8",)]
    assert query(db_path, "SELECT count(*) FROM core_cases") == [(1,)]

    bad = runner.invoke(app, ["exposures", "--db", str(db_path), "--profile", "nhc-v99"])
    assert bad.exit_code == 2 and "nhc-v99" in bad.output

    def broken(con):
        raise RuntimeError("disk full")

    monkeypatch.setattr(contact_graph, "build_graph_tables", broken)
    # As of a day before the positive result, the run would find no case: had the cases it wrote
    # before failing stayed, the count below would be 0.
    failed = runner.invoke(app, ["exposures", "--db", str(db_path), "--profile", "nhc-v6",
                                 "--as-of", "2020-02-01 00:00:00"])
    assert failed.exit_code != 0
    assert query(db_path, "SELECT profile FROM exposure_runs") == [("nhc-v8",)]
    assert query(db_path, "SELECT count(*) FROM core_cases") == [(1,)]


SAMPLE = Path(__file__).resolve().parent.parent / "data" / "sample"


def test_run_on_the_sample_city_day_by_day(prefect_engine, tmp_path, monkeypatch):
    """`trace24 run` end to end on the sample, day by day from day 3: the categories against the
    truth, lists holding their own residents only, statuses against the day before, the clock;
    the snapshot, carried from run to run, holds what a snapshot written afresh holds."""
    from trace24.cli import app
    from trace24.evaluation import FEASIBILITY_CHECKS, evaluate_areas, evaluate_categories, evaluate_dispatch
    from trace24.schemas.published import load_published
    from trace24.transforms.publish import snapshot

    db, out = tmp_path / "t.duckdb", tmp_path / "out"
    runner = CliRunner()
    common = ["run", "--landing", str(SAMPLE / "landing"), "--db", str(db), "--out", str(out), "--no-validate"]
    for day in ("2020-02-13", "2020-02-14"):
        first = runner.invoke(app, [*common, "--as-of", f"{day}T00:00"])
        assert first.exit_code == 0, first.output
    copied = []
    copy_table = snapshot._copy_table
    monkeypatch.setattr(snapshot, "_copy_table", lambda con, table, source: copied.append(table.name)
                        or copy_table(con, table, source))
    second = runner.invoke(app, [*common, "--as-of", "2020-02-15T00:00", "--truth", str(SAMPLE / "truth")])
    assert second.exit_code == 0, second.output
    # The third run's snapshot took person_records from the second's (new loads' links appended)
    # and the history tables' earlier runs...
    assert not {"person_records", "out_list_rows", "category_history"} & set(copied) and "persons" in copied
    info = {"as_of": None, "profile": None, "ingest_run_id": None, "list_folder": None}

    def same_as_written_afresh() -> list[tuple]:
        fresh = tmp_path / "fresh.duckdb"
        fresh.unlink(missing_ok=True)
        with duckdb.connect(str(db)) as con:
            snapshot.publish_snapshot(con, load_published(), fresh, info)
        with duckdb.connect(str(snapshot.snapshot_path_for(db)), read_only=True) as carried, \
                duckdb.connect(str(fresh), read_only=True) as written:
            tables = carried.execute("SELECT table_name, row_count FROM snapshot_tables ORDER BY 1").fetchall()
            assert tables == written.execute("SELECT table_name, row_count FROM snapshot_tables ORDER BY 1").fetchall()
            for table, _ in tables:
                assert (carried.execute(f"SELECT * FROM {table} ORDER BY ALL").fetchall()
                        == written.execute(f"SELECT * FROM {table} ORDER BY ALL").fetchall()), table
        return tables

    # ...and holds exactly what a snapshot written afresh from the same store holds.
    tables = same_as_written_afresh()
    assert dict(tables)["person_records"] > dict(tables)["persons"] > 0
    assert dict(tables)["out_list_rows"] > 0 and dict(tables)["category_history"] > 0
    # An earlier run's history rows that changed in the store (a run redone at its as_of) are taken anew.
    with duckdb.connect(str(db)) as con:
        con.execute("""UPDATE out_list_rows SET status = 'changed'
                       WHERE as_of = (SELECT min(as_of) FROM out_list_rows)
                         AND person_id = (SELECT min(person_id) FROM out_list_rows)""")
        con.execute("""DELETE FROM category_history
                       WHERE as_of = (SELECT min(as_of) FROM category_history)
                         AND person_id = (SELECT max(person_id) FROM category_history)""")
        snapshot.publish_snapshot(con, load_published(), snapshot.snapshot_path_for(db), info)
    tables = same_as_written_afresh()
    # A previous snapshot that DuckDB cannot open is not carried: the run writes a new one.
    snapshot.snapshot_path_for(db).write_bytes(b"not a database")
    with duckdb.connect(str(db)) as con:
        counts = snapshot.publish_snapshot(con, load_published(), snapshot.snapshot_path_for(db), info)
    assert sorted(counts.items()) == tables
    assert "24-hour clock" in second.output and "four categories" in second.output
    with duckdb.connect(str(db), read_only=True) as con:
        scores = {row[0]: row[4:] for row in evaluate_categories(con, SAMPLE / "truth")}
        assert scores["confirmed"] == (1.0, 1.0)
        assert scores["suspected"][0] >= 0.9 and scores["suspected"][1] == 1.0
        assert min(scores["fever"]) >= 0.95
        assert scores["close_contact"][1] == 1.0   # precision is the venue rule's (see README)
        # A community's file holds its own residents only.
        assert con.execute("""SELECT count(*) FROM out_list_rows AS o JOIN persons AS p USING (person_id)
                              WHERE o.community_code IS NOT NULL
                                AND o.community_code IS DISTINCT FROM p.community_code
                                AND o.status <> 'released'""").fetchall() == [(0,)]
        # Statuses against the day before: new = not on that list, released = no longer on it.
        wrong = con.execute("""
            WITH earlier AS (SELECT * FROM out_list_rows WHERE as_of = TIMESTAMP '2020-02-13' AND status <> 'released'),
                 later AS (SELECT * FROM out_list_rows WHERE as_of = TIMESTAMP '2020-02-14')
            SELECT count(*) FROM later LEFT JOIN earlier USING (list_file, person_id)
            WHERE (later.status = 'new') <> (earlier.person_id IS NULL)""").fetchall()[0][0]
        assert wrong == 0
        released = con.execute("""
            SELECT count(*) FROM out_list_rows AS d4
            WHERE d4.as_of = TIMESTAMP '2020-02-13' AND d4.status <> 'released'
              AND NOT EXISTS (SELECT 1 FROM out_list_rows AS d5
                              WHERE d5.as_of = TIMESTAMP '2020-02-14' AND d5.status <> 'released'
                                AND d5.person_id = d4.person_id AND d5.list_file = d4.list_file)
        """).fetchall()[0][0]
        assert released == con.execute("SELECT count(*) FROM out_list_rows WHERE as_of = TIMESTAMP '2020-02-14' "
                                       "AND status = 'released'").fetchall()[0][0] > 0
        statuses = dict(con.execute("SELECT status, count(*) FROM out_list_rows WHERE as_of = TIMESTAMP '2020-02-14' "
                                    "GROUP BY 1").fetchall())
        # Nobody answers the lists here: a row a day on its list comes back 催办 rather than 在管.
        assert statuses.keys() >= {"new", "changed", "reminder", "released"}
        # The clock: one row per case with a clock start, and every missed case says why.
        cases = con.execute("SELECT count(*) FROM core_cases WHERE clock_started_at IS NOT NULL").fetchall()[0][0]
        assert con.execute("SELECT count(*) FROM tracing_clock").fetchall()[0][0] == cases
        assert con.execute("SELECT count(*) FROM tracing_clock WHERE clock_status = 'missed' "
                           "AND len(miss_reasons) = 0").fetchall() == [(0,)]
        # The response against the truth: a feasible plan (never over the true free beds, nobody
        # truly placed planned again, trips of one category within their seats), the true areas.
        feasibility = evaluate_dispatch(con, SAMPLE / "truth")
        assert {name: feasibility[name] for name in FEASIBILITY_CHECKS} == dict.fromkeys(FEASIBILITY_CHECKS, 0)
        assert feasibility["planned_persons"] > 0 and feasibility["shortfall_persons"] > 0
        assert feasibility["truly_placed"] > 0
        assert {scope: (precision, recall) for scope, _, _, _, precision, recall, _ in
                evaluate_areas(con, SAMPLE / "truth")} == {"compound": (1.0, 1.0), "hotel": (1.0, 1.0)}
    assert "dispatch (against truth" in second.output and "feasible: yes" in second.output
    for day in ("2020-02-13", "2020-02-14", "2020-02-15"):
        manifest = json.loads((out / day / "manifest.json").read_text(encoding="utf-8"))
        assert manifest["trip_sheets"] and manifest["arrival_sheets"] and manifest["risk_area_sheets"]


def test_a_store_closed_with_its_checkpoint_deferred_keeps_every_commit(db_path):
    """The daily flow closes the store after each stage without a checkpoint (the lists come out
    sooner): what was committed stays in the write-ahead log, the next connection sees it, and the
    first one closed outside the block writes it into the file."""
    from trace24.schemas.contracts import load_schemas
    from trace24.transforms import database

    wal = Path(str(db_path) + ".wal")
    with database.checkpoints_deferred():
        con = database.connect(db_path, load_schemas())
        con.execute("CREATE TABLE kept AS SELECT range AS x FROM range(100000)")
        con.close()
    assert wal.exists()
    con = database.connect(db_path, load_schemas())
    assert con.execute("SELECT count(*), sum(x) FROM kept").fetchall() == [(100000, 4999950000)]
    con.close()
    assert not wal.exists()



def store_setting(db_path, name: str) -> str:
    """A DuckDB setting of the store as trace24 opens it."""
    from trace24.schemas.contracts import load_schemas
    from trace24.transforms import database

    con = database.connect(db_path, load_schemas())
    try:
        return con.execute("SELECT current_setting($name)", {"name": name}).fetchall()[0][0]
    finally:
        con.close()


def test_the_operator_caps_what_a_query_may_spill(db_path, monkeypatch):
    """TRACE24_DUCKDB_TEMP_LIMIT bounds DuckDB's spill files (a runaway query then fails its run
    instead of filling the disk); unset, DuckDB's own default stands."""
    assert "available disk space" in store_setting(db_path, "max_temp_directory_size")
    monkeypatch.setenv("TRACE24_DUCKDB_TEMP_LIMIT", "2GB")
    assert store_setting(db_path, "max_temp_directory_size") == "1.8 GiB"


def test_the_operator_sets_how_much_memory_the_store_may_use(db_path, monkeypatch):
    """DuckDB works under 3 GB unless TRACE24_DUCKDB_MEMORY_LIMIT says otherwise: the 1M target is
    4 GB for the whole run, and a ten-million city runs with 10GB (README, Benchmarks)."""
    monkeypatch.delenv("TRACE24_DUCKDB_MEMORY_LIMIT", raising=False)
    assert store_setting(db_path, "memory_limit") == "2.7 GiB"   # 3 GB in DuckDB's binary units
    monkeypatch.setenv("TRACE24_DUCKDB_MEMORY_LIMIT", "10GB")
    assert store_setting(db_path, "memory_limit") == "9.3 GiB"


def test_the_peak_memory_a_run_reports_is_its_own_not_its_parents():
    """The run report and the benchmarks print peak memory; a run started from a bigger process
    (a benchmark that generated its city first, a worker) must not report its parent's peak."""
    ballast = bytearray(512 * 2**20)
    ballast[::4096] = b"\1" * len(ballast[::4096])  # resident, not just reserved
    child = subprocess.run([sys.executable, "-c", "from trace24.transforms.publish.run_report import peak_memory_bytes; "
                                                  "print(peak_memory_bytes())"],
                           capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parent.parent)
    assert 0 < int(child.stdout) < 256 * 2**20
    del ballast


def test_a_run_reads_its_settings_once_from_the_contracts_folder_it_is_given(prefect_engine, day1, tmp_path,
                                                                             schemas_copy, monkeypatch):
    """`trace24 run --schemas` takes a whole contracts folder as `trace24 ingest` does: a column map
    and a rule profile found only there are used, and the run reads its settings once."""
    from tests.test_schemas import CITY_B_MAP, city_b_file
    from trace24 import settings
    from trace24.flows.daily import daily_tracing

    contracts = schemas_copy
    (contracts / "column_maps" / "cityb_fever_clinic.yaml").write_text(CITY_B_MAP, encoding="utf-8")
    profile = (contracts / "rules" / "nhc-v6.yaml").read_text(encoding="utf-8")
    (contracts / "rules" / "city-b.yaml").write_text(profile.replace("profile: nhc-v6", "profile: city-b"),
                                                      encoding="utf-8")
    city_b_file(day1)
    builds = []
    real_build = settings.RunSettings.build.__func__
    monkeypatch.setattr(settings.RunSettings, "build",
                        classmethod(lambda cls, *a, **k: builds.append(k) or real_build(cls, *a, **k)))
    db_path = tmp_path / "store.duckdb"
    result = daily_tracing(landing_dir=day1.parent, db_path=db_path, out_dir=tmp_path / "lists",
                           profile="city-b", schemas_dir=contracts, run_validation=False)
    assert len(builds) == 1
    assert result["profile"] == "city-b"
    assert query(db_path, "SELECT column_map, rows_loaded FROM load_audit") == [("cityb_fever_clinic", 1)]
    assert query(db_path, "SELECT DISTINCT profile FROM exposure_runs") == [("city-b",)]
