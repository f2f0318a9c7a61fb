"""Out layer: the contact graph for epidemiologists: chains, generations, clusters, spreaders.

What belongs here: graph functions over plain link lists (usable on any outbreak's links, the
real-data tests feed them MERS and measles line lists), and the step that builds the graph from
``core_cases`` and ``core_contacts`` and writes the ``out_*`` tables and the DuckDB macros
``chain_of`` and ``contacts_of``. What does not: deciding who is exposed (``exposures.py``).

Transmission links are close contacts between two cases. A link is time-consistent when the
exposure began before the infectee's onset and the infector's onset is not after the infectee's
(``core_cases.estimated_onset_at``: the onset, else the time the case's window implies). Each
case's primary infector is the consistent candidate with the earliest onset (then the lowest person id): the chains and
generations follow primary links only; every candidate stays in ``out_transmission_links``.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable

import duckdb
import networkx as nx
import pandas as pd

from trace24.transforms.database import scalar

Edge = tuple[Hashable, Hashable]


def transmission_graph(edges: Iterable[Edge], nodes: Iterable[Hashable] = ()) -> nx.DiGraph:
    graph = nx.DiGraph()
    graph.add_nodes_from(sorted(nodes, key=str))
    graph.add_edges_from(sorted(edges, key=lambda e: (str(e[0]), str(e[1]))))
    return graph


def generations(graph: nx.DiGraph) -> dict[Hashable, tuple[Hashable, int]]:
    """Each node's root and generation: the fewest links from a root (a node nobody infected).
    A node reachable from several roots takes the nearest, then the first root in sorted order."""
    result: dict[Hashable, tuple[Hashable, int]] = {}
    roots = sorted((n for n in graph if graph.in_degree(n) == 0), key=str)
    for root in roots:
        for node, depth in nx.single_source_shortest_path_length(graph, root).items():
            if node not in result or depth < result[node][1]:
                result[node] = (root, depth)
    # Nodes on a cycle with no root above them: the cycle's first node in sorted order is their root.
    for node in sorted((n for n in graph if n not in result), key=str):
        if node in result:
            continue
        for reached, depth in nx.single_source_shortest_path_length(graph, node).items():
            if reached not in result:
                result[reached] = (node, depth)
    return result


def generation_sizes(graph: nx.DiGraph, root: Hashable) -> dict[int, int]:
    """How many cases in each generation below ``root`` (generation 1 = infected by the root)."""
    sizes: dict[int, int] = {}
    for node, depth in nx.single_source_shortest_path_length(graph, root).items():
        if node != root:
            sizes[depth] = sizes.get(depth, 0) + 1
    return dict(sorted(sizes.items()))


def clusters(graph: nx.Graph | nx.DiGraph) -> dict[Hashable, int]:
    """Connected outbreaks: cluster 1 is the largest (then the one with the first node)."""
    undirected = graph.to_undirected(as_view=True) if graph.is_directed() else graph
    components = sorted(nx.connected_components(undirected), key=lambda c: (-len(c), min(map(str, c))))
    return {node: number for number, component in enumerate(components, 1) for node in component}


def spreaders(graph: nx.DiGraph) -> list[tuple[Hashable, int]]:
    """Cases by how many they infected, most first."""
    return sorted(((n, d) for n, d in graph.out_degree() if d > 0), key=lambda x: (-x[1], str(x[0])))


def serial_intervals(graph: nx.DiGraph, onsets: dict[Hashable, pd.Timestamp]) -> list[float]:
    """Days from infector's onset to infectee's onset, for links where both are known."""
    return [(onsets[b] - onsets[a]).total_seconds() / 86400 for a, b in graph.edges
            if pd.notna(onsets.get(a)) and pd.notna(onsets.get(b))]


def timeline_conflicts(graph: nx.DiGraph, onsets: dict[Hashable, pd.Timestamp]) -> list[Edge]:
    """Links whose infectee fell ill before its infector."""
    return [(a, b) for a, b in graph.edges
            if pd.notna(onsets.get(a)) and pd.notna(onsets.get(b)) and onsets[b] < onsets[a]]


CANDIDATE_LINKS_SQL = """
CREATE OR REPLACE TABLE out_transmission_links AS
WITH cases AS (
    SELECT person_id, case_code, onset_date, estimated_onset_at AS ill_at FROM core_cases
),
candidates AS (
    SELECT c.source_person_id AS infector_person_id, c.exposed_person_id AS infectee_person_id,
           s.case_code AS infector_case_code, x.case_code AS infectee_case_code,
           c.settings, c.first_exposure_at, s.ill_at AS infector_ill_at, x.ill_at AS infectee_ill_at,
           date_diff('day', s.onset_date, x.onset_date) AS serial_interval_days,
           c.first_exposure_at <= x.ill_at AND s.ill_at <= x.ill_at AS is_time_consistent
    FROM core_contacts AS c
    JOIN cases AS s ON s.person_id = c.source_person_id
    JOIN cases AS x ON x.person_id = c.exposed_person_id
    WHERE c.contact_level = 'close'
),
ranked AS (
    SELECT *, row_number() OVER (PARTITION BY infectee_person_id
                                 ORDER BY is_time_consistent DESC, infector_ill_at, infector_person_id) AS rank
    FROM candidates
)
SELECT infector_person_id, infectee_person_id, infector_case_code, infectee_case_code, settings,
       first_exposure_at, serial_interval_days, is_time_consistent,
       rank = 1 AND is_time_consistent AS is_primary
FROM ranked
ORDER BY infector_case_code, infectee_case_code
"""

SETTING_CLUSTERS_SQL = """
CREATE OR REPLACE TABLE out_setting_clusters AS
WITH cases AS (
    SELECT c.person_id, c.case_code, p.household_id, c.estimated_onset_at AS ill_at,
           c.window_start_at, c.window_end_at
    FROM core_cases AS c JOIN persons AS p USING (person_id)
),
case_scans AS MATERIALIZED (
    -- The cases' own scans with their windows, first: a few hundred thousand rows. Left to the
    -- optimiser, the window test became a range join of every office scan with every case
    -- (billions of rows, tens of GB spilled) before the join to the case's own scans.
    SELECT c.person_id, c.case_code, c.ill_at, c.window_start_at, c.window_end_at, pr.load_id, pr.source_row_number
    FROM cases AS c
    JOIN person_records AS pr ON pr.person_id = c.person_id AND pr.feed = 'place_scans'
),
offices AS (
    -- Cases seen at the same office venue while infectious: a workplace.
    SELECT DISTINCT s.person_id, s.case_code, s.ill_at, v.venue_code AS place_key
    FROM case_scans AS s
    JOIN staged_place_scans AS v ON v.load_id = s.load_id AND v.source_row_number = s.source_row_number
    WHERE v.venue_type = '办公' AND v.scanned_at BETWEEN s.window_start_at AND s.window_end_at
),
members AS (
    SELECT 'household' AS setting, household_id AS place_key, person_id, case_code, ill_at
    FROM cases WHERE household_id IS NOT NULL
    UNION ALL
    SELECT 'workplace', place_key, person_id, case_code, ill_at FROM offices
)
SELECT setting, place_key, count(*) AS cases, list(case_code ORDER BY ill_at, case_code) AS case_codes,
       min(ill_at) AS first_ill_at, max(ill_at) AS last_ill_at
FROM members
GROUP BY setting, place_key
-- A cluster: 2 or more cases within 14 days of each other (first to last).
HAVING count(*) >= 2 AND max(ill_at) - min(ill_at) <= INTERVAL 14 DAY
ORDER BY setting, place_key
"""

SPREADERS_SQL = """
CREATE OR REPLACE TABLE out_spreaders AS
SELECT c.case_code, c.person_id,
       count(*) FILTER (WHERE k.contact_level = 'close') AS close_contacts,
       count(*) FILTER (WHERE k.contact_level = 'general') AS general_contacts,
       count(*) FILTER (WHERE k.contact_level = 'secondary') AS secondary_contacts,
       (SELECT count(*) FROM out_transmission_links AS l
        WHERE l.infector_person_id = c.person_id AND l.is_primary) AS cases_infected
FROM core_cases AS c LEFT JOIN core_contacts AS k ON k.source_person_id = c.person_id
GROUP BY c.case_code, c.person_id
ORDER BY cases_infected DESC, close_contacts DESC, case_code
"""

VENUES_SQL = """
CREATE OR REPLACE TABLE out_venues AS
WITH venue_exposures AS (
    SELECT e.source_person_id, e.exposed_person_id, e.contact_level, v.venue_code, v.venue_name, v.venue_type
    FROM (SELECT source_person_id, exposed_person_id, contact_level, unnest(evidence) AS ref
          FROM core_exposures WHERE rule_id LIKE '%venue_co_location') AS e
    JOIN staged_place_scans AS v ON v.load_id = e.ref.load_id AND v.source_row_number = e.ref.source_row_number
)
SELECT venue_code, any_value(venue_name) AS venue_name, any_value(venue_type) AS venue_type,
       count(DISTINCT source_person_id) AS cases,
       count(DISTINCT exposed_person_id) FILTER (WHERE contact_level = 'close') AS close_contacts,
       count(DISTINCT exposed_person_id) AS exposed_people
FROM venue_exposures
GROUP BY venue_code
ORDER BY exposed_people DESC, venue_code
"""

# Macros for epidemiologists; stored in the database file, so they work in any DuckDB session.
MACROS = (
    """CREATE OR REPLACE MACRO chain_of(code) AS TABLE
    WITH RECURSIVE chain(case_code, person_id, generation) AS (
        SELECT case_code, person_id, 0 FROM core_cases WHERE case_code = code
        UNION
        SELECT l.infectee_case_code, l.infectee_person_id, chain.generation + 1
        FROM chain JOIN out_transmission_links AS l
          ON l.infector_person_id = chain.person_id AND l.is_primary
    )
    SELECT case_code, person_id, min(generation) AS generation FROM chain
    GROUP BY case_code, person_id ORDER BY generation, case_code""",
    """CREATE OR REPLACE MACRO contacts_of(code) AS TABLE
    SELECT k.* FROM core_contacts AS k JOIN core_cases AS c ON c.person_id = k.source_person_id
    WHERE c.case_code = code ORDER BY k.contact_level, k.first_exposure_at, k.exposed_person_id""",
)


def build_graph_tables(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Write the out_* graph tables from core_cases and core_contacts; return their sizes."""
    con.execute(CANDIDATE_LINKS_SQL)
    cases = con.execute("SELECT case_code FROM core_cases ORDER BY case_code").fetchall()
    primary = con.execute("SELECT infector_case_code, infectee_case_code FROM out_transmission_links "
                          "WHERE is_primary ORDER BY 1, 2").fetchall()
    graph = transmission_graph(primary, [code for (code,) in cases])
    depth = generations(graph)
    cluster_of = clusters(graph)
    rows = pd.DataFrame(
        [(code, depth[code][0], depth[code][1], cluster_of[code]) for (code,) in cases],
        columns=["case_code", "root_case_code", "generation", "cluster_id"],
    ).astype({"case_code": "string", "root_case_code": "string", "generation": "int32", "cluster_id": "int32"})
    con.register("generation_rows", rows)
    con.execute("""CREATE OR REPLACE TABLE out_case_generations AS
                   SELECT g.case_code, c.person_id, g.root_case_code, g.generation, g.cluster_id
                   FROM generation_rows AS g JOIN core_cases AS c USING (case_code)
                   ORDER BY g.cluster_id, g.generation, g.case_code""")
    con.unregister("generation_rows")
    con.execute("""CREATE OR REPLACE TABLE out_clusters AS
                   SELECT cluster_id, count(*) AS cases, max(generation) AS generations,
                          list(DISTINCT root_case_code ORDER BY root_case_code) AS root_case_codes,
                          list(case_code ORDER BY generation, case_code) AS case_codes
                   FROM out_case_generations GROUP BY cluster_id ORDER BY cluster_id""")
    con.execute("""CREATE OR REPLACE TABLE out_timeline_conflicts AS
                   SELECT l.* FROM out_transmission_links AS l
                   WHERE NOT l.is_time_consistent
                     -- Both directions of a shared exposure are candidates; a pair is a conflict
                     -- only when neither reads forward in time.
                     AND NOT EXISTS (SELECT 1 FROM out_transmission_links AS r
                                     WHERE r.infector_person_id = l.infectee_person_id
                                       AND r.infectee_person_id = l.infector_person_id AND r.is_time_consistent)
                   ORDER BY l.infector_case_code, l.infectee_case_code""")
    for sql in (SETTING_CLUSTERS_SQL, SPREADERS_SQL, VENUES_SQL, *MACROS):
        con.execute(sql)
    return {table: scalar(con, f"SELECT count(*) FROM {table}") for table in
            ("out_transmission_links", "out_case_generations", "out_clusters", "out_timeline_conflicts",
             "out_setting_clusters", "out_spreaders", "out_venues")}
