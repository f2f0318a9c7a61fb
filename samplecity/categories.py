"""The answer key for the four categories: who is in which, at the end of the last delivery day.

Computed from what really happened (the world's visits, samples, cards, admissions, cases and
true exposures), with the rules of ``../shared/domain-rules.md`` and the numbers of the ``nhc-v6``
profile. The pipeline sees the same events only through faulty deliveries; the difference is what
the per-category precision and recall measure. Written after the landing files, from the world
alone: it draws no random numbers, so it changes no delivered file.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import defaultdict

from .geo import HOSPITALS
from .world import World

CATEGORY_HEADER = ["person_key", "category", "is_asymptomatic", "reason"]
RESPIRATORY = re.compile("发热|咳|咽痛|气促|呼吸困难|胸闷")


def true_categories(w: World) -> dict[int, tuple[str, bool, str]]:
    """person → (category, is_asymptomatic, reason) at the horizon, for everyone in a category."""
    from trace24.schemas.rules import load_rule_profile

    profile = load_rule_profile("nhc-v6")
    rules = profile.categories
    horizon = w.schedule.horizon

    def before(t: dt.datetime | None) -> bool:
        return t is not None and t < horizon

    day = dt.timedelta(days=1)

    negatives = defaultdict(list)
    positive_reported: dict[int, dt.datetime] = {}
    for s in w.samples:
        if s.result == "阴性" and before(s.reported):
            negatives[s.person].append(s)
        elif s.result == "阳性" and before(s.reported):
            positive_reported[s.person] = min(s.reported, positive_reported.get(s.person, s.reported))

    # Cards as they stand at the horizon: the last version delivered, unless deleted.
    card_state: dict[int, list[tuple[dt.datetime, dt.datetime, dict]]] = defaultdict(list)
    for card in w.cards:
        versions = [(t, v) for t, v in card.versions if before(t)]
        if versions and versions[-1][1]["status"] != "删除":
            card_state[card.person].append((versions[0][0], versions[-1][0], versions[-1][1]))

    # Confirmed: a positive result reported, or a card classed 确诊病例/无症状感染者.
    confirmed: dict[int, tuple[dt.datetime, bool]] = {}
    for person in set(positive_reported) | set(card_state):
        times = [positive_reported[person]] if person in positive_reported else []
        classes = [(first, state["class"]) for first, _, state in card_state.get(person, [])
                   if state["class"] in ("确诊病例", "无症状感染者")]
        times += [first for first, _ in classes]
        if times:
            latest = max(card_state.get(person, []), key=lambda c: c[1], default=None)
            asymptomatic = latest is not None and latest[2]["class"] == "无症状感染者"
            confirmed[person] = (min(times), asymptomatic)
    discharged = {a.person for a in w.admissions
                  if a.person in confirmed and HOSPITALS[a.hospital].isolation and before(a.discharge)
                  and a.discharge > confirmed[a.person][0]}

    visits = sorted((v for v in w.visits if before(v.time)), key=lambda v: v.time)
    pop = w.pop

    def compound_of(person: int) -> int | None:
        h = int(pop.household[person])
        return int(pop.hh_compound[h]) if h >= 0 and person < pop.n_register else None

    case_compounds = defaultdict(list)
    for person, (at, _) in confirmed.items():
        if compound_of(person) is not None:
            case_compounds[compound_of(person)].append(at)
    exposed_to = defaultdict(list)
    for e in w.exposures:
        exposed_to[e.exposed].append(e)
    fever_households = defaultdict(list)
    for v in visits:
        if v.temperature >= rules.fever_threshold_c and pop.household[v.person] >= 0:
            fever_households[int(pop.household[v.person])].append((v.person, v.time))

    def clinical_items(v) -> int:
        return (int(v.temperature >= rules.fever_threshold_c or bool(RESPIRATORY.search(v.symptoms)))
                + int(any(marker in v.ct for marker in rules.ct_markers))
                + int(v.wbc <= rules.white_cell_at_most or v.lymph < rules.lymphocyte_below))

    def epidemiological(v) -> bool:
        lo = v.time - rules.epi_days * day
        compound = compound_of(v.person)
        if compound is not None and any(lo <= at <= v.time for at in case_compounds.get(compound, [])):
            return True
        if any(e.first <= v.time and e.last >= lo and e.source in confirmed for e in exposed_to.get(v.person, [])):
            return True
        h = int(pop.household[v.person])
        return h >= 0 and any(p != v.person and lo <= t <= v.time for p, t in fever_households.get(h, []))

    # Suspected: a card 疑似病例 standing at the horizon, a hospital diagnosis, or the clinical rule.
    suspicions = defaultdict(list)
    for person, cards in card_state.items():
        suspicions[person] += [(first, "suspected_case_report") for first, _, s in cards if s["class"] == "疑似病例"]
    for v in visits:
        if "疑似" in v.diagnosis:
            suspicions[v.person].append((v.time, "hospital_diagnosis"))
        items = clinical_items(v)
        if items == 3 or (items >= 2 and epidemiological(v)):
            suspicions[v.person].append((v.time, "clinical_rule"))
    for a in w.admissions:
        if "疑似" in a.diagnosis and before(a.admit):
            suspicions[a.person].append((a.admit, "hospital_diagnosis"))

    def excluded(person: int, since: dt.datetime) -> bool:
        for _, last_at, state in card_state.get(person, []):
            if state["class"] == "排除病例" and last_at >= since:
                return True
        tests = [s for s in negatives.get(person, []) if s.sampled >= since - dt.timedelta(hours=2)]
        return any(b.sampled >= a.sampled + dt.timedelta(hours=rules.exclusion_hours_apart)
                   for a in tests for b in tests)

    result: dict[int, tuple[str, bool, str]] = {}
    for person, (_, asymptomatic) in confirmed.items():
        if person not in discharged:
            result[person] = ("confirmed", asymptomatic, "asymptomatic_case" if asymptomatic else "confirmed_case")
    for person, events in suspicions.items():
        if not events:
            continue
        since, reason = min(events)
        if person not in confirmed and person not in result and not excluded(person, since):
            result[person] = ("suspected", False, reason)
    latest_visit = {}
    for v in visits:
        if v.temperature >= rules.fever_threshold_c:
            latest_visit[v.person] = v
    for person, v in latest_visit.items():
        if person in confirmed or person in result or v.diagnosis == "排除":
            continue
        negative = any(s.sampled >= v.time - dt.timedelta(hours=2) for s in negatives.get(person, []))
        if not negative and v.time + rules.fever_observation_days * day > horizon:
            result[person] = ("fever", False, "fever_clinic_visit")
    ends = defaultdict(lambda: dt.date.min)
    for e in w.exposures:
        if e.source in confirmed and e.exposed not in confirmed and before(confirmed[e.source][0]):
            ends[e.exposed] = max(ends[e.exposed], (e.last + profile.close_contact_days * day).date())
    for person, end in ends.items():
        if person not in result and person not in confirmed and dt.datetime.combine(end, dt.time()) > horizon:
            result[person] = ("close_contact", False, "close_contact")
    return result
