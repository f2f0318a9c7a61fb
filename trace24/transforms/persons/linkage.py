"""Core stage, probabilistic linkage: records without a valid ID number → a person, scored by Splink.

What belongs here: the linkage profile (``schemas/linkage.yaml``), the Splink model on DuckDB
(u trained on the data each run from random pairs, m set in the profile), the scoring of every
record without a valid ID against the persons known by ID and against each other, each record's
probability per candidate person (its share of the evidence: a record is one person), the review
queue and the analysts' decisions. What does not: exact links and the person-key ledger
(``identity.py``).

Records are scored as *signatures*: the distinct combinations of ID text, name, phone, birth date,
sex and address. Forty scans by one phone without an ID number are one signature, and a signature's
id is a hash of its values, so an analyst's decision about it holds on every later run.
"""

from __future__ import annotations

import copy
import csv
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import duckdb
import networkx as nx
import pyarrow as pa
import yaml

from trace24.schemas.contracts import SCHEMAS_DIR, SchemaError
from trace24.transforms.database import fingerprint, get_state, scalar, set_state
from trace24.transforms.persons.identity import STAGE, exact_link, most_frequent_ctes, most_frequent_joins
from trace24.transforms.persons.named_contacts import find_named_contacts

log = logging.getLogger(__name__)

REVIEW_DECISIONS = ("match", "no_match")
REVIEWED_PAIRS_HEADER = ("signature_id", "person_id", "decision", "reviewer", "note")


@dataclass(frozen=True)
class LinkageProfile:
    auto_link: float
    review: float
    blocking_rules: tuple[str, ...]
    u_max_pairs: float
    seed: int
    m_probabilities: dict[str, dict[str, float]]
    complete_blocks: tuple[str, ...] = ()


def load_profile(path: Path | None = None) -> LinkageProfile:
    """Read ``schemas/linkage.yaml``; a broken profile raises ``SchemaError`` naming what to fix."""
    path = Path(path) if path is not None else SCHEMAS_DIR / "linkage.yaml"
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        thresholds, training = data["thresholds"], data["training"]
        profile = LinkageProfile(
            auto_link=float(thresholds["auto_link"]), review=float(thresholds["review"]),
            blocking_rules=tuple(str(r) for r in data["blocking_rules"]),
            u_max_pairs=float(training["u_max_pairs"]), seed=int(training["seed"]),
            m_probabilities={k: {lk: float(lv) for lk, lv in v.items()} for k, v in data["m_probabilities"].items()},
            complete_blocks=tuple(str(c) for c in data.get("complete_blocks") or ()),
        )
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError) as exc:
        raise SchemaError(f"{path}: broken linkage profile: {exc!r}") from exc
    if not 0.5 < profile.auto_link <= 1 or not 0 < profile.review < profile.auto_link:
        raise SchemaError(f"{path}: thresholds need 0 < review < auto_link, and 0.5 < auto_link <= 1 "
                          "(a record's candidates share a probability of 1: only one may link)")
    for column in profile.complete_blocks:
        if column not in profile.m_probabilities or f"l.{column} = r.{column}" not in profile.blocking_rules:
            raise SchemaError(f"{path}: complete_blocks names {column!r}: it needs m_probabilities and "
                              f"the blocking rule \"l.{column} = r.{column}\"")
    return profile


# Profiles: one row per person known by ID and per name/phone variant it was seen with, gaps filled
# from the person's other records. A person's rows depend on their own person_values alone, so they
# are kept in linkage_profiles and recomputed only for the persons in profile_changes.
PROFILES_QUERY = f"""
WITH exact_counted AS (
    -- The exact-linked records, counted per person and identity values as they arrived.
    SELECT person_id, name, phone, sex, birth_date, address, id_number, record_count AS n
    FROM person_values
    WHERE {{scope}}
),
{most_frequent_ctes("exact_counted")},
person_usual AS (
    SELECT person_id, id_number, name, phone, birth_date, sex, address
    FROM (SELECT person_id, min(id_number) AS id_number FROM exact_counted GROUP BY person_id)
    {most_frequent_joins()}),
variants AS (
    -- The person's usual name and phone, plus any other phone it was seen with: one row per person
    -- unless it has several phones, so random pairs of rows are pairs of different people.
    SELECT person_id, name, phone FROM person_usual
    UNION
    SELECT DISTINCT e.person_id, coalesce(e.name, v.name), e.phone
    FROM exact_counted AS e
    JOIN person_usual AS v USING (person_id)
    WHERE e.phone IS NOT NULL AND e.phone <> v.phone
),
profiles AS (
    SELECT 'p' || lpad(person_id::VARCHAR, 12, '0') || '-'
               || row_number() OVER (PARTITION BY person_id ORDER BY x.name NULLS FIRST, x.phone NULLS FIRST)
               AS unique_id,
           person_id AS label, true AS is_profile,
           v.id_number, x.name, x.phone, v.birth_date, v.sex, v.address
    FROM variants AS x
    JOIN person_usual AS v USING (person_id)
)
SELECT * FROM profiles
"""

# Splink's input: the profiles, and the distinct identities (signatures) of records without a
# valid ID. Sorted, so that the model's random sampling sees the same table whichever way the
# profiles were assembled.
LINK_INPUT_SQL = """
CREATE OR REPLACE TEMP TABLE link_input AS
SELECT * FROM (
    SELECT * FROM linkage_profiles WHERE label NOT IN (SELECT person_id FROM profiled_persons)
    UNION ALL
    SELECT * FROM changed_profiles
    UNION ALL
    SELECT DISTINCT signature_id AS unique_id, NULL::BIGINT AS label, false AS is_profile,
           id_number, name, phone, birth_date, sex, address
    FROM unidentified_records
)
ORDER BY unique_id
"""


@dataclass(frozen=True)
class LinkagePlan:
    """Whether the model must train and score again, and why; what this linkage is computed from."""

    is_needed: bool
    reason: str
    inputs: str  # fingerprint of the settings, the analysts' decisions and the unidentified records


def plan_linkage(con: duckdb.DuckDBPyConnection, profile: LinkageProfile,
                 reviewed: list[tuple[str, int, str]]) -> LinkagePlan:
    """Bring the profiles up to date (temp table ``changed_profiles``) and say whether linkage must
    run again. It need not when its inputs are those of the last linkage: the
    same settings and decisions, no new record without a valid ID, no profile changed (a new
    result of a person known by ID changes nobody's profile unless it changes their usual values),
    and the same named contacts found (``named_contacts.py``, temp table ``named_contact_links``).
    The same input gives the same links, so skipping it changes nothing. Reads only."""
    stored = get_state(con, STAGE).get("linkage_inputs")
    # Whose profiles to compute: those that may have moved (``profile_changes``: a new combination
    # of values, or new records of a person with two values of a column); everyone on a first
    # linkage (or in a store from before linkage_profiles).
    every_person = stored is None or not scalar(con, "SELECT count(*) FROM linkage_profiles")
    con.execute(f"""CREATE OR REPLACE TEMP TABLE profiled_persons AS
                    SELECT DISTINCT person_id FROM {'person_values' if every_person else 'profile_changes'}""")
    con.execute("CREATE OR REPLACE TEMP TABLE changed_profiles AS "
                + PROFILES_QUERY.format(scope="person_id IN (SELECT person_id FROM profiled_persons)"))
    # A named contact's link moves with the wards' and hotels' records, not with the profiles.
    find_named_contacts(con)
    inputs = fingerprint([profile, sorted(reviewed),
                           scalar(con, "SELECT count(*) FROM unidentified_records"),
                           con.execute("SELECT * FROM named_contact_links ORDER BY ALL").fetchall()])
    if stored is None:
        return LinkagePlan(True, "first linkage", inputs)
    if stored != inputs:
        return LinkagePlan(True, "new records without a valid ID, or new settings or decisions", inputs)
    changed = scalar(con, """
        SELECT count(*) FROM (
            (SELECT * FROM changed_profiles
             EXCEPT ALL SELECT * FROM linkage_profiles WHERE label IN (SELECT person_id FROM profiled_persons))
            UNION ALL
            (SELECT * FROM linkage_profiles WHERE label IN (SELECT person_id FROM profiled_persons)
             EXCEPT ALL SELECT * FROM changed_profiles))""")
    if changed:
        return LinkagePlan(True, "profiles of persons known by ID changed", inputs)
    return LinkagePlan(False, "inputs unchanged since the last linkage", inputs)


def store_profiles(con: duckdb.DuckDBPyConnection, plan: LinkagePlan) -> None:
    """Keep the profiles ``plan_linkage`` computed, and the inputs the links now stand on."""
    con.execute("DELETE FROM linkage_profiles WHERE label IN (SELECT person_id FROM profiled_persons)")
    con.execute("INSERT INTO linkage_profiles SELECT * FROM changed_profiles")
    con.execute("DELETE FROM profile_changes")
    set_state(con, STAGE, "linkage_inputs", plan.inputs)


def within_two_edits(left: str, right: str) -> str:
    """SQL condition, true whenever ``levenshtein(left, right) <= 2`` (and for far more pairs of
    strings of 8 characters or less): cheap, so Levenshtein is computed only where it may hold.

    Cut ``left`` into three disjoint pieces (all but the last 8 characters, 4, the last 4): two
    edits touch two pieces at most, so one piece is untouched and lies whole in ``right``. Random
    pairs of ID numbers seldom share a piece (the pieces after the region code are the birth month
    and day, the sequence number and check character), so Splink's random pairs (u) and candidate
    pairs skip Levenshtein on ~99%: 3.3 -> 0.7 s per 4 M pairs.
    """
    return (f"(length({left}) < 9 OR contains({right}, left({left}, length({left}) - 8)) "
            f"OR contains({right}, substr({left}, length({left}) - 7, 4)) OR contains({right}, right({left}, 4)))")


def _comparisons(m_probabilities: dict[str, dict[str, float]]) -> list:
    import splink.comparison_level_library as cll
    import splink.comparison_library as cl

    def levenshtein(column: str, edits: int) -> cll.CustomLevel:
        """Splink's LevenshteinLevel, with ``within_two_edits`` first."""
        if edits > 2:
            raise ValueError("within_two_edits holds for up to two edits")
        left, right = f"{column}_l", f"{column}_r"
        return cll.CustomLevel(f"{within_two_edits(left, right)} AND levenshtein({left}, {right}) <= {edits}",
                               label_for_charts=f"Levenshtein distance of {column} <= {edits}")

    def levels(column: str, *named: tuple[str, object]) -> cl.CustomComparison:
        m = m_probabilities[column]
        built = [cll.NullLevel(column)]
        built += [level.configure(m_probability=m[name]) for name, level in named]
        built.append(cll.ElseLevel().configure(m_probability=m["else"]))
        return cl.CustomComparison(output_column_name=column, comparison_levels=built)

    def exact(column: str, tf: bool = False):
        return "exact", cll.ExactMatchLevel(column, term_frequency_adjustments=tf)

    return [
        levels("name", exact("name", tf=True)),
        # No frequency adjustment for phones: a mobile number belongs to one person, and the
        # frequency of a value seen twice (the person and this record) would halve that evidence.
        levels("phone", exact("phone")),
        levels("id_number", ("one_char", levenshtein("id_number", 1)),
               ("two_chars", levenshtein("id_number", 2))),
        levels("birth_date", exact("birth_date")),
        levels("sex", exact("sex")),
        levels("address", exact("address"), ("similar", cll.JaroWinklerLevel("address", 0.88))),
    ]


# Each record's evidence per candidate person, for its shares (SHARES_SQL). A record is one person:
# its candidates and the rest of the city share its probability, each by their evidence (the pair's
# posterior odds, prior included). Where the record carries a column of complete_blocks, everyone
# outside its candidates disagrees on that column, which weighs the rest by the Bayes factor of
# disagreeing (rest_odds). A phone only one person has then links to them (~0.9); a phone a father
# and his daughter share gives each ~0.47: review. Two records without a valid ID stay pairwise.
CANDIDATES_SQL = """
CREATE OR REPLACE TEMP TABLE link_candidates AS
WITH signatures AS (
    SELECT unique_id AS signature_id, {rest_odds} AS rest_odds
    FROM link_input
    WHERE NOT is_profile
),
person_pairs AS (
    -- Both orders of a pair, the record's side first; the profile side names the person.
    SELECT s.unique_id_l AS signature_id, p.label AS person_id, s.match_weight, s.match_probability
    FROM link_scores AS s JOIN link_input AS p ON p.unique_id = s.unique_id_r AND p.is_profile
    UNION ALL
    SELECT s.unique_id_r, p.label, s.match_weight, s.match_probability
    FROM link_scores AS s JOIN link_input AS p ON p.unique_id = s.unique_id_l AND p.is_profile
)
-- A person with several profile rows (phones) counts once, by their best row.
SELECT p.signature_id, p.person_id, pow(2, max(p.match_weight)) AS odds, any_value(s.rest_odds) AS rest_odds,
       max(p.match_probability) AS pair_probability
FROM person_pairs AS p
JOIN signatures AS s USING (signature_id)
GROUP BY p.signature_id, p.person_id
"""

# The shares, without the persons an analyst ruled out: "not the father" leaves the daughter the
# phone's evidence, and she links. A candidate goes to review when its share or the pair alone
# reaches the review threshold: four people on one phone get a quarter each, and still an analyst.
SHARES_SQL = """
WITH kept AS (
    SELECT * FROM link_candidates AS c
    WHERE NOT EXISTS (SELECT 1 FROM rejected_pairs AS r
                      WHERE r.signature_id = c.signature_id AND r.person_id = c.person_id)
),
shares AS (
    SELECT signature_id, person_id, pair_probability,
           odds / (rest_odds + sum(odds) OVER (PARTITION BY signature_id)) AS share
    FROM kept
)
SELECT signature_id, person_id, share
FROM shares
WHERE share >= $review OR pair_probability >= $review
ORDER BY signature_id, person_id
"""


def rest_odds_sql(columns: tuple[str, ...]) -> str:
    """SQL: the weight of the rest of the city for a signature row of link_input; one parameter
    ``$disagree_<column>`` per column of complete_blocks (names checked against the profile's m)."""
    factors = [f"CASE WHEN {column} IS NULL THEN 1.0 ELSE $disagree_{column} END" for column in columns]
    return " * ".join(factors) or "1.0"


EXACT_LEVEL = re.compile(r'"(\w+)_l" = "\1_r"')


def settle_u(con: duckdb.DuckDBPyConnection, model: dict, pairs_sampled: float) -> dict:
    """The trained model with the u that random pairs cannot measure in a large city.

    Two million random pairs of a million rows hold about two that share a phone, and none whose
    ID numbers are one character apart: the phone's u came out of two pairs, and the one-character
    level fell back to Splink's default (about 10 bits of evidence, where a typo of a number shared
    by nobody else is worth 20), so a record with a name and a mistyped ID number scored 0.34 with
    its person. An exact level's u is counted instead, over every pair of ``link_input`` (the share
    of pairs with both values equal: the sum of c(c-1) over values seen c times, over n(n-1)); a
    level the draw never saw gets one in the pairs drawn, as rare as the draw can tell. Returns a
    new model dict; the given one is left unchanged.
    """
    settled = copy.deepcopy(model)
    for comparison in settled["comparisons"]:
        for level in comparison["comparison_levels"]:
            if level.get("is_null_level"):
                continue
            exact = EXACT_LEVEL.fullmatch(level["sql_condition"])
            if exact:  # the column name comes from our own comparisons, checked by the pattern
                counted = scalar(con, f"""
                    SELECT sum(n * (n - 1)) / (sum(n) * (sum(n) - 1))
                    FROM (SELECT count(*)::DOUBLE AS n FROM link_input
                          WHERE {exact.group(1)} IS NOT NULL GROUP BY {exact.group(1)})""")
                if counted:
                    level["u_probability"] = counted
            if not level.get("u_probability"):
                level["u_probability"] = 1.0 / pairs_sampled
    return settled


def disagreement_factors(model: dict, columns: tuple[str, ...]) -> dict[str, float]:
    """Bayes factor of disagreeing (the ELSE level's m / u) per column, from Splink's trained model."""
    factors = {}
    for comparison in model["comparisons"]:
        column = comparison["output_column_name"]
        if column in columns:
            level = next(lv for lv in comparison["comparison_levels"] if lv["sql_condition"] == "ELSE")
            factors[column] = level["m_probability"] / level["u_probability"]
    return factors


def score_pairs(con: duckdb.DuckDBPyConnection, profile: LinkageProfile) -> int:
    """Train the model on this data (``link_input``: the profiles ``plan_linkage`` brought up to date,
    and the signatures), score candidate pairs into the temp table ``link_scores`` and each record's
    probability per candidate person into ``link_candidates``.

    Returns the number of scored pairs kept: those that can reach the review threshold as a pair or
    as a share. Pairs of two persons known by ID are never formed: each blocking rule requires a
    record without a valid ID on one side.
    """
    from splink import DuckDBAPI, Linker, SettingsCreator  # imported here: a heavy import only this step needs
    from splink.blocking_rule_library import CustomRule

    con.execute(LINK_INPUT_SQL)
    con.execute("""CREATE OR REPLACE TEMP TABLE link_scores (unique_id_l VARCHAR, unique_id_r VARCHAR,
                   match_probability DOUBLE, match_weight DOUBLE)""")
    signatures = scalar(con, "SELECT count(*) FROM link_input WHERE NOT is_profile")
    persons = scalar(con, "SELECT count(DISTINCT label) FROM link_input WHERE is_profile")
    factors = {column: 1.0 for column in profile.complete_blocks}
    if signatures and persons:
        one_side_unidentified = "(NOT l.is_profile OR NOT r.is_profile)"
        settings = SettingsCreator(
            link_type="dedupe_only",
            unique_id_column_name="unique_id",
            # A record without an ID is someone among the persons: one chance in that many per pair.
            probability_two_random_records_match=1.0 / (persons + signatures),
            comparisons=_comparisons(profile.m_probabilities),
            blocking_rules_to_generate_predictions=[
                CustomRule(f"({rule}) AND {one_side_unidentified}") for rule in profile.blocking_rules
            ],
            additional_columns_to_retain=["is_profile", "label"],
        )
        # Splink works in a scratch in-memory database: its many working tables never reach the
        # store, and it runs outside the store's transaction (it recovers from its own failed statements).
        scratch = duckdb.connect(config={"memory_limit": scalar(con, "SELECT current_setting('memory_limit')")})
        try:
            scratch.register("link_input_arrow", con.table("link_input").to_arrow_table())
            scratch.execute("CREATE TABLE link_input AS SELECT * FROM link_input_arrow")
            scratch.unregister("link_input_arrow")
            table = DuckDBAPI(connection=scratch).register("link_input")
            linker = Linker(table, settings, log_level=logging.WARNING)
            linker.training.estimate_u_using_random_sampling(max_pairs=profile.u_max_pairs, seed=profile.seed)
            model = settle_u(scratch, linker.misc.save_model_to_json(), profile.u_max_pairs)
            linker = Linker(table, model, log_level=logging.WARNING)
            factors = disagreement_factors(model, profile.complete_blocks)
            predictions = linker.inference.predict(threshold_match_probability=_score_floor(profile, factors),
                                                   warning_mode="never")
            scores = scratch.sql(f"""SELECT unique_id_l, unique_id_r, match_probability, match_weight
                                     FROM {predictions.physical_name}""").to_arrow_table()
        finally:
            scratch.close()
        con.register("link_scores_arrow", scores)
        con.execute("INSERT INTO link_scores SELECT * FROM link_scores_arrow")
        con.unregister("link_scores_arrow")
    con.execute(CANDIDATES_SQL.format(rest_odds=rest_odds_sql(profile.complete_blocks)),
                {f"disagree_{column}": factor for column, factor in factors.items()})
    return scalar(con, "SELECT count(*) FROM link_scores")


def _score_floor(profile: LinkageProfile, factors: dict[str, float]) -> float:
    """The lowest pair probability that can still reach ``review`` as a share: a pair whose odds
    are at least the rest's weight times review's odds (the rest weighs least when the record
    carries every column of complete_blocks)."""
    rest = 1.0
    for factor in factors.values():
        rest *= min(factor, 1.0)
    odds = rest * profile.review / (1 - profile.review)
    return min(profile.review, odds / (1 + odds))


def read_reviewed_pairs(path: Path | None) -> list[tuple[str, int, str]]:
    """The analysts' decisions: (signature_id, person_id, decision). A bad line stops the run, named."""
    if path is None or not Path(path).exists():
        return []
    decisions = []
    with open(path, newline="", encoding="utf-8-sig") as handle:
        for number, row in enumerate(csv.DictReader(handle), start=2):
            decision = (row.get("decision") or "").strip()
            try:
                person_id = int((row.get("person_id") or "").strip())
            except ValueError:
                raise SchemaError(f"{path}:{number}: person_id must be a whole number") from None
            if decision not in REVIEW_DECISIONS:
                raise SchemaError(f"{path}:{number}: decision must be one of {REVIEW_DECISIONS}, got {decision!r}")
            decisions.append(((row.get("signature_id") or "").strip(), person_id, decision))
    return decisions


@dataclass(frozen=True)
class LinkOutcome:
    records: int
    signatures: int
    linked_auto: int
    linked_reviewed: int
    new_persons: int
    review_pairs: int
    linked_named: int = 0  # named contacts found at their ward or hotel room (named_contacts.py)
    is_rescored: bool = True  # False: inputs unchanged, the stored links stand (``plan_linkage``)


def stored_outcome(con: duckdb.DuckDBPyConnection) -> LinkOutcome:
    """The counts of the links as they stand, for a run whose linkage inputs had not changed."""
    methods = dict(con.execute(f"""
        SELECT p.link_method, count(DISTINCT u.signature_id)
        FROM person_records AS p
        JOIN unidentified_records AS u USING (feed, load_id, source_row_number)
        WHERE NOT {exact_link('p.link_method')}
        GROUP BY 1""").fetchall())
    return LinkOutcome(
        records=scalar(con, "SELECT count(*) FROM unidentified_records"),
        signatures=scalar(con, "SELECT count(DISTINCT signature_id) FROM unidentified_records"),
        linked_auto=methods.get("probabilistic", 0), linked_reviewed=methods.get("reviewed", 0),
        new_persons=0, review_pairs=scalar(con, "SELECT count(*) FROM link_review"),
        linked_named=methods.get("named_contact", 0), is_rescored=False,
    )


def resolve(con: duckdb.DuckDBPyConnection, profile: LinkageProfile, reviewed: list[tuple[str, int, str]]
            ) -> LinkOutcome:
    """Decide every signature's person from the scores and the analysts' decisions; write the links.

    A signature takes, in order: the person an analyst matched it to; the one person of a named
    contact's name at the ward or hotel room where a case met them (``named_contact_links``, from
    ``plan_linkage``); the person whose share of its
    probability (``link_candidates``) is at or above auto_link (one at most: auto_link is above 0.5);
    the person of a signature it links to automatically; else a person of its own, whose id stays the
    same on every run (ledger key ``sig:<signature_id>``).
    """
    signatures = [row[0] for row in con.execute(
        "SELECT signature_id FROM unidentified_records GROUP BY 1 ORDER BY min(delivery_date), 1").fetchall()]
    matched = {s: p for s, p, d in sorted(reviewed) if d == "match"}
    con.execute("CREATE OR REPLACE TEMP TABLE rejected_pairs (signature_id VARCHAR, person_id BIGINT)")
    _insert(con, "rejected_pairs", sorted({(s, p) for s, p, d in reviewed if d == "no_match"}))

    best: dict[str, tuple[float, int]] = {}  # signature -> its person at or above auto_link
    candidates: list[tuple[str, int, float]] = []  # review band, person side
    for signature, person, probability in con.execute(SHARES_SQL, {"review": profile.review}).fetchall():
        if probability >= profile.auto_link:
            best[signature] = (probability, person)
        else:
            candidates.append((signature, person, probability))
    graph = nx.Graph()
    graph.add_nodes_from(signatures)
    for left, right, probability in con.execute("""
            SELECT s.unique_id_l, s.unique_id_r, s.match_probability
            FROM link_scores AS s
            JOIN link_input AS l ON l.unique_id = s.unique_id_l AND NOT l.is_profile
            JOIN link_input AS r ON r.unique_id = s.unique_id_r AND NOT r.is_profile
            WHERE s.match_probability >= $auto_link
            ORDER BY 1, 2""", {"auto_link": profile.auto_link}).fetchall():
        graph.add_edge(left, right, probability=probability)

    assigned: dict[str, tuple[int, str, float]] = {}
    for signature, person in matched.items():
        assigned[signature] = (person, "reviewed", 1.0)
    for signature, person in con.execute("SELECT signature_id, person_id FROM named_contact_links "
                                         "WHERE (signature_id, person_id) NOT IN (SELECT * FROM rejected_pairs) "
                                         "ORDER BY 1").fetchall():
        assigned.setdefault(signature, (person, "named_contact", 1.0))
    for signature, (probability, person) in best.items():
        assigned.setdefault(signature, (person, "probabilistic", probability))
    loose: list[list[str]] = []
    for component in sorted((sorted(c) for c in nx.connected_components(graph)), key=lambda c: c[0]):
        known = sorted((assigned[s] for s in component if s in assigned), key=lambda a: (-a[2], a[0]))
        for signature in component:
            if signature in assigned:
                continue
            if known:
                edge = max((graph.edges[signature, n]["probability"] for n in graph.neighbors(signature)), default=0.0)
                assigned[signature] = (known[0][0], "probabilistic", edge)
        if not known:
            loose.append(component)
    new_persons = _persons_of_their_own(con, loose, assigned, candidates)
    _record_merges(con, assigned)

    con.execute("CREATE OR REPLACE TEMP TABLE signature_links (signature_id VARCHAR, person_id BIGINT, "
                "link_method VARCHAR, match_probability DOUBLE)")
    _insert(con, "signature_links", [(s, p, m, round(pr, 6)) for s, (p, m, pr) in sorted(assigned.items())])
    con.execute(f"DELETE FROM person_records WHERE NOT {exact_link()}")
    con.execute("""INSERT INTO person_records
                   SELECT u.feed, u.load_id, u.source_row_number, s.person_id, s.link_method, s.match_probability
                   FROM unidentified_records AS u JOIN signature_links AS s USING (signature_id)""")
    review_pairs = _write_review(con, candidates, assigned)
    methods = [m for _, m, _ in assigned.values()]
    return LinkOutcome(
        records=scalar(con, "SELECT count(*) FROM unidentified_records"), signatures=len(signatures),
        linked_auto=methods.count("probabilistic"), linked_reviewed=methods.count("reviewed"),
        new_persons=new_persons, review_pairs=review_pairs, linked_named=methods.count("named_contact"),
    )


def _persons_of_their_own(con, loose: list[list[str]], assigned: dict, candidates: list) -> int:
    """Signatures linked to nobody known by ID: one person per group, reusing the id a member had."""
    best_candidate: dict[str, float] = {}
    for signature, _, probability in candidates:
        best_candidate[signature] = max(best_candidate.get(signature, 0.0), probability)
    keys = dict(con.execute("SELECT person_key, person_id FROM person_keys WHERE person_key LIKE 'sig:%'").fetchall())
    next_id = (scalar(con, "SELECT max(person_id) FROM person_keys") or 0) + 1
    created = 0
    ledger = []
    for component in loose:
        existing = sorted({keys[f"sig:{s}"] for s in component if f"sig:{s}" in keys})
        if existing:
            person = existing[0]
            for other in existing[1:]:
                con.execute("INSERT INTO person_merges SELECT $a, $b WHERE NOT EXISTS "
                            "(SELECT 1 FROM person_merges WHERE person_id = $a)", {"a": other, "b": person})
        else:
            person, next_id, created = next_id, next_id + 1, created + 1
        for signature in component:
            assigned[signature] = (person, "new_person", best_candidate.get(signature, 0.0))
            if f"sig:{signature}" not in keys:
                ledger.append((f"sig:{signature}", person))
    if ledger:
        con.execute("CREATE OR REPLACE TEMP TABLE new_ledger "
                    "(person_key VARCHAR, person_id BIGINT, signature_id VARCHAR)")
        _insert(con, "new_ledger", [(key, person, key[4:]) for key, person in ledger])
        con.execute("""INSERT INTO person_keys
                       SELECT l.person_key, l.person_id, min(u.delivery_date)
                       FROM new_ledger AS l JOIN unidentified_records AS u USING (signature_id)
                       GROUP BY l.person_key, l.person_id""")
        con.execute("DROP TABLE new_ledger")
    return created


def _record_merges(con, assigned: dict) -> None:
    """A signature that had a person of its own and now links to a known person: keep the old id, merged."""
    rows = con.execute("SELECT person_key, person_id FROM person_keys WHERE person_key LIKE 'sig:%'").fetchall()
    merges = sorted({(old, assigned[key[4:]][0]) for key, old in rows
                     if key[4:] in assigned and assigned[key[4:]][0] != old})
    for old, new in merges:
        con.execute("INSERT INTO person_merges SELECT $a, $b WHERE NOT EXISTS "
                    "(SELECT 1 FROM person_merges WHERE person_id = $a)", {"a": old, "b": new})


def _write_review(con, candidates: list, assigned: dict) -> int:
    """Pairs between the thresholds, for signatures not linked to a known person; the analysts' queue."""
    # A pair can be scored more than once (a person with records under several phones): keep its best score.
    best: dict[tuple, float] = {}
    for signature, person, probability in candidates:
        if assigned[signature][1] == "new_person":
            best[(signature, person)] = max(best.get((signature, person), 0.0), probability)
    rows = sorted((s, p, round(pr, 6)) for (s, p), pr in best.items())
    con.execute("""CREATE OR REPLACE TABLE link_review (
                       signature_id VARCHAR NOT NULL, person_id BIGINT NOT NULL, match_probability DOUBLE NOT NULL)""")
    _insert(con, "link_review", rows)
    return len(rows)


def _insert(con: duckdb.DuckDBPyConnection, table: str, rows: list[tuple]) -> None:
    """Append Python rows to ``table`` (a name from this module, never from data) in one statement:
    executemany ran one statement per row, 3.8 s for the 3,000 signatures of a million residents."""
    if not rows:
        return  # a day without unidentified records is normal
    frame = pa.table(list(zip(*rows, strict=True)), names=con.table(table).columns)
    con.register("python_rows", frame)
    try:
        con.execute(f"INSERT INTO {table} SELECT * FROM python_rows")
    finally:
        con.unregister("python_rows")


REVIEW_EXPORT_SQL = """
WITH records AS (
    SELECT signature_id, any_value(id_number) AS id_number, any_value(name) AS name, any_value(phone) AS phone,
           any_value(birth_date) AS birth_date, any_value(sex) AS sex, any_value(address) AS address,
           count(*) AS records, string_agg(DISTINCT feed, ';' ORDER BY feed) AS feeds
    FROM unidentified_records
    GROUP BY signature_id
)
SELECT v.signature_id, v.person_id, round(v.match_probability, 4), '' AS decision, '' AS reviewer, '' AS note,
       r.records, r.feeds, r.id_number, r.name, r.phone, r.birth_date, r.sex, r.address,
       p.id_number, p.name, p.phone, p.birth_date, p.sex, p.community_name, p.address_text
FROM link_review AS v
JOIN records AS r USING (signature_id)
LEFT JOIN persons AS p ON p.person_id = v.person_id
ORDER BY v.signature_id, v.match_probability DESC, v.person_id
"""
REVIEW_EXPORT_HEADER = (
    *REVIEWED_PAIRS_HEADER[:2], "match_probability", *REVIEWED_PAIRS_HEADER[2:], "records", "feeds",
    "record_id_number", "record_name", "record_phone", "record_birth_date", "record_sex", "record_address",
    "person_id_number", "person_name", "person_phone", "person_birth_date", "person_sex", "person_community",
    "person_address",
)


def export_review(con: duckdb.DuckDBPyConnection, path: Path) -> int:
    """The review queue as CSV for analysts: fill ``decision`` (match / no_match), save as the reviewed-pairs file."""
    from trace24.transforms.csv_out import write_csv

    return write_csv(path, REVIEW_EXPORT_HEADER, con.execute(REVIEW_EXPORT_SQL).fetchall())
