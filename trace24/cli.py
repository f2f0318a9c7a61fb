"""The ``trace24`` command line: parse arguments, call a flow, print what it did. No logic here."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from trace24.schemas.rules import DEFAULT_PROFILE

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="trace24: agency extracts to four-categories lists within 24 hours.")
console = Console(width=None if Console().is_terminal else 160)


def _prefect_defaults() -> None:
    """A Prefect home in the folder trace24 runs from, and quiet telemetry, unless the user set their own."""
    os.environ.setdefault("PREFECT_HOME", str(Path.cwd() / ".prefect"))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")


def _configuration_error_stops(read, *args, **kwargs):
    """``read(...)``; a broken configuration file ends the command with its message and exit code 2."""
    from trace24.schemas.contracts import SchemaError

    try:
        return read(*args, **kwargs)
    except SchemaError as exc:
        console.print(f"[red]Configuration error:[/red] {exc}")
        raise typer.Exit(2) from exc


def _check_configuration(db: Path, **options):
    """The run's settings, read before the flow engine starts: a broken file stops here, named."""
    from trace24.settings import RunSettings

    return _configuration_error_stops(RunSettings.build, db, **options)


PROFILE_OPTION = typer.Option(DEFAULT_PROFILE, "--profile",
                              help="Rule profile under the contracts' rules/ folder (or a .yaml path).")
SCHEMAS_OPTION = typer.Option(None, "--schemas", file_okay=False,
                              help="Another contracts folder, whole (feeds, column maps, rules, lists, linkage).")
FACILITIES_OPTION = typer.Option(None, "--facilities", dir_okay=False, exists=True,
                                 help="Another facilities file; default: facilities.yaml of the contracts.")
SNAPSHOT_OPTION = typer.Option(None, "--snapshot", dir_okay=False,
                               help="The read-only snapshot to publish; default: <db>_read.duckdb beside DB.")


@app.command()
def ingest(
    landing: Path = typer.Option(..., "--landing", exists=True, file_okay=False, help="Landing folder."),
    db: Path = typer.Option(..., "--db", dir_okay=False, help="DuckDB file (created if missing)."),
    schemas: Path = SCHEMAS_OPTION,
    validate: bool = typer.Option(True, help="Validate loads with Great Expectations and build data docs."),
) -> None:
    """Load every new delivery under LANDING into DB, and print the load audit."""
    _prefect_defaults()
    _check_configuration(db, schemas_dir=schemas)
    from trace24.flows.ingest import ingest_flow

    db.parent.mkdir(parents=True, exist_ok=True)
    result = _configuration_error_stops(ingest_flow, landing_dir=landing, db_path=db, schemas_dir=schemas,
                                        run_validation=validate, progress=console.is_terminal)
    if result["warnings"]:
        console.print(f"[yellow]{len(result['warnings'])} delivery warnings[/yellow] (table delivery_warnings)")
    print_audit(db, result["run_id"])
    skipped = sum(f["status"] == "skipped" for f in result["files"])
    if skipped:
        console.print(f"{skipped} files were loaded by an earlier run and are unchanged: skipped.")
    if result["data_docs"]:
        console.print(f"Validation reports: {result['data_docs']}")


def print_audit(db: Path, run_id: int) -> None:
    import duckdb

    from trace24.transforms.ingest.load import audit_summary

    with duckdb.connect(str(db), read_only=True) as con:
        rows = audit_summary(con, run_id)
    table = Table(title=f"load_audit, run {run_id}")
    for name in ("day", "agency", "feed", "file", "status", "read", "loaded", "quarantined", "superseded",
                 "valid"):
        table.add_column(name, justify="right" if name in {"read", "loaded", "quarantined", "superseded"} else "left")
    totals = [0, 0, 0, 0]
    for day, agency, feed, source_file, status, *counts, passed in rows:
        totals = [t + c for t, c in zip(totals, counts, strict=True)]
        table.add_row(str(day), agency, feed, source_file.split("/")[-1], status, *map(str, counts),
                      {True: "yes", False: "NO", None: "-"}[passed])
    table.add_row("total", "", "", f"{len(rows)} files", "", *map(str, totals), "", style="bold")
    console.print(table)


@app.command()
def link(
    db: Path = typer.Option(..., "--db", exists=True, dir_okay=False, help="DuckDB file written by ingest."),
    reviewed_pairs: Path = typer.Option(None, "--reviewed-pairs", dir_okay=False,
                                        help="Analysts' decisions (CSV); default: reviewed_pairs.csv next to DB."),
    review_csv: Path = typer.Option(None, "--review-csv", dir_okay=False,
                                    help="Where to write the review queue; default: link_review.csv next to DB."),
    schemas: Path = SCHEMAS_OPTION,
) -> None:
    """Resolve persons across agencies and assign each a community; print the counts."""
    _prefect_defaults()
    from trace24.transforms.persons import linkage

    settings = _check_configuration(db, schemas_dir=schemas, review_csv=review_csv, reviewed_pairs=reviewed_pairs)
    _configuration_error_stops(linkage.read_reviewed_pairs, settings.reviewed_pairs)  # a bad line stops here
    from trace24.flows.identity import identity_flow

    result = identity_flow(db_path=db, review_csv=settings.review_csv, reviewed_pairs=settings.reviewed_pairs,
                           schemas_dir=schemas)
    table = Table(title="identity")
    table.add_column("what")
    table.add_column("count", justify="right")
    linked = result["linkage"]
    for label, value in (
        ("persons", result["persons"]), ("identity records added", result["records_added"]),
        ("records linked by ID or passport number", result["exact_links"]),
        ("records without a valid ID", linked["records"]),
        ("  linked automatically (probabilistic)", linked["linked_auto"]),
        ("  linked by an analyst's decision", linked["linked_reviewed"]),
        ("  named contacts found where they met", linked["linked_named"]),
        ("  persons of their own", linked["new_persons"]),
        ("pairs waiting for review", linked["review_pairs"]),
        *((f"community: {method}", count) for method, count in result["communities"].items()),
    ):
        table.add_row(label, f"{value:,}")
    console.print(table)
    console.print(f"Review queue: {result['review_csv']} (fill 'decision', save as {settings.reviewed_pairs.name})")


@app.command()
def exposures(
    db: Path = typer.Option(..., "--db", exists=True, dir_okay=False, help="DuckDB file after ingest and link."),
    profile: str = PROFILE_OPTION,
    as_of: datetime = typer.Option(None, "--as-of", help="What the run may know; default: end of last delivery day."),
    schemas: Path = SCHEMAS_OPTION,
    facilities: Path = FACILITIES_OPTION,
) -> None:
    """Cases and their infectious windows, exposures by the profile's rules, and the contact graph."""
    _prefect_defaults()
    _check_configuration(db, profile=profile, schemas_dir=schemas, facilities_path=facilities)
    from trace24.flows.exposures import exposure_flow

    result = exposure_flow(db_path=db, profile=profile, as_of=as_of, schemas_dir=schemas, facilities_path=facilities)
    table = Table(title=f"exposures ({result['profile']}, as of {result['as_of']})")
    table.add_column("what")
    table.add_column("count", justify="right")
    rows = [("cases", result["cases"]),
            *((f"exposures: {setting}", n) for setting, n in result["exposures_by_setting"].items()),
            *((f"contacts: {level}", n) for level, n in result["contacts_by_level"].items()),
            *((f"table {name}", n) for name, n in result["graph"].items())]
    for label, value in rows:
        table.add_row(label, f"{value:,}")
    console.print(table)


@app.command()
def run(
    landing: Path = typer.Option(..., "--landing", exists=True, file_okay=False, help="Landing folder."),
    db: Path = typer.Option(..., "--db", dir_okay=False, help="DuckDB file (created if missing)."),
    out: Path = typer.Option(..., "--out", file_okay=False, help="Where the lists go: OUT/<as-of date>/..."),
    as_of: datetime = typer.Option(None, "--as-of",
                                   help="What the run may know (deliveries of earlier days); default: everything."),
    profile: str = PROFILE_OPTION,
    truth: Path = typer.Option(None, "--truth", exists=True, file_okay=False,
                               help="A generated city's truth folder: print precision and recall per category, "
                                    "dispatch feasibility and risk areas."),
    validate: bool = typer.Option(True, help="Validate loads with Great Expectations and build data docs."),
    snapshot: Path = SNAPSHOT_OPTION,
    schemas: Path = SCHEMAS_OPTION,
    facilities: Path = FACILITIES_OPTION,
) -> None:
    """Every stage end to end: ingest, identity, exposures, the four categories, the lists, the clock,
    then the read-only snapshot for epidemiologists."""
    _prefect_defaults()
    _check_configuration(db, profile=profile, schemas_dir=schemas, facilities_path=facilities)
    from trace24.flows.daily import daily_tracing

    db.parent.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    result = daily_tracing(landing_dir=landing, db_path=db, out_dir=out, as_of=as_of, profile=profile,
                           run_validation=validate, progress=console.is_terminal, snapshot_path=snapshot,
                           schemas_dir=schemas, facilities_path=facilities)
    table = Table(title=f"trace24 run as of {result['as_of']} ({result['profile']})")
    table.add_column("what")
    table.add_column("count", justify="right")
    for label, value in (("persons", result["persons"]), ("cases", result["cases"]),
                         *((f"category: {c}", n) for c, n in result["categories"].items()),
                         ("list files", result["list_files"]), ("list rows", result["list_rows"])):
        table.add_row(label, f"{value:,}")
    console.print(table)
    clock = Table(title="24-hour clock: cases by district and day of clock start (contacts listed; "
                        "contacts controlled, as the offices answered)")
    for name in ("district", "day", "cases", "listed: met", "missed", "pending", "compliance",
                 "controlled: met", "compliance "):
        clock.add_column(name, justify="left" if name in ("district", "day") else "right")
    for row in result["compliance"]:
        clock.add_row(*row[:6], "-" if row[6] == "None" else f"{float(row[6]):.0%}", row[7],
                      "-" if row[10] == "None" else f"{float(row[10]):.0%}")
    console.print(clock)
    stages = Table(title="stages")
    for name in ("stage", "seconds", "peak memory (GiB)"):
        stages.add_column(name, justify="left" if name == "stage" else "right")
    for stage in result["stages"]:
        stages.add_row(stage["stage"], f"{stage['seconds']:.1f}", f"{stage['peak_memory_gib']:.2f}")
    console.print(stages)
    console.print(f"Lists: {result['lists_dir']} (manifest.json lists every file with its SHA-256)")
    console.print(f"Snapshot for queries: {result['snapshot']} (read-only; see docs/data-dictionary.md)")
    if truth:
        import duckdb

        from trace24.evaluation import (
            evaluate_areas,
            evaluate_categories,
            evaluate_dispatch,
            format_categories,
            format_response,
        )

        with duckdb.connect(str(db), read_only=True) as con:
            console.print(format_categories(evaluate_categories(con, truth)))
            if (truth / "facilities.csv").exists():
                console.print(format_response(evaluate_dispatch(con, truth), evaluate_areas(con, truth)))


@app.command()
def serve(
    landing: Path = typer.Option(..., "--landing", exists=True, file_okay=False, help="Landing folder."),
    db: Path = typer.Option(..., "--db", dir_okay=False, help="DuckDB file (created if missing)."),
    out: Path = typer.Option(..., "--out", file_okay=False, help="Where the lists go: OUT/<as-of date>/..."),
    profile: str = PROFILE_OPTION,
    cron: str = typer.Option("0 * * * *", "--cron", help="When to run (cron, the server's time zone); default hourly."),
    name: str = typer.Option("scheduled", "--name", help="The deployment's name in the Prefect UI."),
    snapshot: Path = SNAPSHOT_OPTION,
    validate: bool = typer.Option(True, help="Validate loads with Great Expectations and build data docs."),
    schemas: Path = SCHEMAS_OPTION,
    facilities: Path = FACILITIES_OPTION,
) -> None:
    """Run the daily flow on a schedule against a Prefect server, until stopped (Ctrl-C).

    Each run loads the deliveries it has not seen and recomputes what depends on them, as of the
    end of the last delivery day."""
    _prefect_defaults()
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        console.print("[red]No Prefect server:[/red] a schedule needs one. Start it with `prefect server start` "
                      "and set PREFECT_API_URL=http://127.0.0.1:4200/api (see the README).")
        raise typer.Exit(2)
    _check_configuration(db, profile=profile, schemas_dir=schemas, facilities_path=facilities)
    from prefect.deployments.runner import EntrypointType

    from trace24.flows.daily import daily_tracing

    db.parent.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    # Absolute paths: the served runs start in their own processes.
    parameters = {"landing_dir": str(landing.resolve()), "db_path": str(db.resolve()), "out_dir": str(out.resolve()),
                  "profile": profile, "run_validation": validate,
                  "snapshot_path": str(snapshot.resolve()) if snapshot else None,
                  "schemas_dir": str(schemas.resolve()) if schemas else None,
                  "facilities_path": str(facilities.resolve()) if facilities else None}
    daily_tracing.serve(name=name, cron=cron, parameters=parameters, tags=["trace24"],
                        description="trace24: new deliveries to lists, clock and snapshot",
                        entrypoint_type=EntrypointType.MODULE_PATH)


@app.command()
def dictionary(
    out: Path = typer.Option(Path("docs/data-dictionary.md"), "--out", dir_okay=False,
                             help="Where to write the data dictionary (Markdown)."),
) -> None:
    """Write the data dictionary of the published tables, generated from schemas/published/."""
    from trace24.data_dictionary import render
    from trace24.schemas.published import load_published

    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(load_published()), encoding="utf-8")
    console.print(f"Data dictionary: {out}")


@app.command()
def evaluate(
    db: Path = typer.Option(..., "--db", exists=True, dir_okay=False, help="DuckDB file after ingest and link."),
    truth: Path = typer.Option(Path("data/sample/truth"), "--truth", exists=True, file_okay=False,
                               help="The generator's truth folder."),
    answers: Path | None = typer.Option(None, "--answers", exists=True, dir_okay=False,
                                        help="What the sample offices answered (samplecity/offices.py)."),
) -> None:
    """Links, communities, close contacts, categories, dispatch feasibility and risk areas, against a
    generated city's truth; with --answers, the offices' answers and control within 24 hours, and
    the health checks reported beside them (health_checks.csv)."""
    import duckdb

    from trace24.evaluation import (
        evaluate_followup,
        evaluate_health_checks,
        evaluation_report,
        format_followup,
        format_health_checks,
    )
    from trace24.transforms.lists.list_workbooks import load_answer_layout

    with duckdb.connect(str(db), read_only=True) as con:
        console.print(evaluation_report(con, truth))
        if answers:
            layout = load_answer_layout()
            controlling = [layout.values[key] for key in layout.controlling]
            console.print("\n" + format_followup(evaluate_followup(con, answers, controlling)))
            checks = answers.with_name("health_checks.csv")
            if checks.exists():
                console.print("\n" + format_health_checks(evaluate_health_checks(con, checks)))


@app.command()
def sample(
    out: Path = typer.Option(Path("data/sample"), "--out", help="Where to write landing/ and truth/."),
    residents: int = typer.Option(3000, help="Residents in the register."),
    days: int = typer.Option(5, help="Delivery days."),
    seed: int = typer.Option(2020, help="Random seed; the same seed gives the same files."),
) -> None:
    """Generate the sample city (deterministic)."""
    from samplecity import generate_city

    summary = generate_city(out, residents=residents, days=days, seed=seed)
    console.print(summary)


portal_app = typer.Typer(add_completion=False, help="The web portal for community offices and commands.")
users_app = typer.Typer(add_completion=False, help="The portal's accounts.")
portal_app.add_typer(users_app, name="users")
app.add_typer(portal_app, name="portal")
SNAPSHOT_READ_OPTION = typer.Option(Path("out/trace24_read.duckdb"), "--snapshot", dir_okay=False,
                                    help="The read-only snapshot a run publishes.")
ACCOUNTS_OPTION = typer.Option(None, "--accounts", dir_okay=False,
                               help="The portal's accounts file; default: portal.sqlite beside the snapshot.")


def _accounts_path(snapshot: Path, accounts: Path | None) -> Path:
    return accounts or snapshot.with_name("portal.sqlite")


@portal_app.callback(invoke_without_command=True)
def portal(
    ctx: typer.Context,
    snapshot: Path = SNAPSHOT_READ_OPTION,
    lists: Path = typer.Option(Path("out/lists"), "--lists", file_okay=False, help="The lists folder (--out of run)."),
    landing: Path | None = typer.Option(None, "--landing", file_okay=False,
                                        help="Where uploaded answers go (community/ of the list's day); "
                                             "without it, no uploads."),
    accounts: Path | None = ACCOUNTS_OPTION,
    host: str = typer.Option("127.0.0.1", help="Address to listen on (loopback unless you mean otherwise)."),
    port: int = typer.Option(8024, help="Port."),
    workers: int = typer.Option(2, help="Worker processes (one per core serves the most pages)."),
    insecure_cookies: bool = typer.Option(False, "--insecure-cookies",
                                          help="Cookies without Secure, for a browser that will not send them "
                                               "over plain HTTP to this host."),
) -> None:
    """Serve the portal (with no sub-command): each office and command sees only its own."""
    if ctx.invoked_subcommand is not None:
        return
    import uvicorn

    from trace24.portal.app import PortalConfig, create_app

    config = PortalConfig(snapshot=snapshot, lists_dir=lists, accounts=_accounts_path(snapshot, accounts),
                          landing_dir=landing, secure_cookies=not insecure_cookies)
    create_app(config)   # a missing or broken accounts file stops here, before the workers start
    os.environ[PortalConfig.ENVIRONMENT] = config.to_environment()
    console.print(f"trace24 portal on http://{host}:{port} (snapshot {snapshot}, accounts {config.accounts})")
    uvicorn.run("trace24.portal.app:app_from_environment", factory=True, host=host, port=port, workers=workers,
                log_level="warning")


@users_app.command("add")
def users_add(
    username: str = typer.Argument(..., help="Login name (letters, digits, . _ -)."),
    role: str = typer.Option(..., "--role", help="office, street, district, city or epidemiologist."),
    scope: str | None = typer.Option(None, "--scope",
                                     help="office: 12-digit community code; street: 9-digit code; district: name."),
    snapshot: Path = SNAPSHOT_READ_OPTION,
    accounts: Path | None = ACCOUNTS_OPTION,
    password: str = typer.Option(..., prompt=True, hide_input=True, confirmation_prompt=True,
                                 help="Asked for when not given (at least 10 characters)."),
) -> None:
    """Add an account."""
    from trace24.portal.accounts import AccountError, Accounts

    try:
        user = Accounts(_accounts_path(snapshot, accounts)).add_user(username, role, scope, password)
    except AccountError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc
    console.print(f"added {user.username} ({user.role}{' ' + user.scope if user.scope else ''})")


@users_app.command("list")
def users_list(snapshot: Path = SNAPSHOT_READ_OPTION, accounts: Path | None = ACCOUNTS_OPTION) -> None:
    """The accounts: name, role, scope."""
    from trace24.portal.accounts import Accounts

    for user in Accounts(_accounts_path(snapshot, accounts)).users():
        console.print(f"{user.username}\t{user.role}\t{user.scope or ''}")


@users_app.command("sample")
def users_sample(snapshot: Path = SNAPSHOT_READ_OPTION, accounts: Path | None = ACCOUNTS_OPTION) -> None:
    """Demo accounts, one per role, over the snapshot's first district; passwords printed once."""
    from trace24.portal.accounts import Accounts, sample_accounts
    from trace24.portal.snapshot_reader import Snapshot

    _, _, directory, _ = Snapshot(snapshot).state()
    made = sample_accounts(Accounts(_accounts_path(snapshot, accounts)), list(directory.values()))
    for username, role, scope, password in made:
        console.print(f"{username:<24} {role:<15} {scope or '':<14} password: {password}")
    if not made:
        console.print("the sample accounts exist already (trace24 portal users list)")


if __name__ == "__main__":
    app()
