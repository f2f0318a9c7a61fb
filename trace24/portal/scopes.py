"""What each account may see: its communities, streets and districts, from the snapshot's directory.

What belongs here: the one rule every route asks before it reads anything. What does not: reading
the data (``snapshot_reader.py``) or accounts (``accounts.py``). Anything outside a user's scope is
answered as if it did not exist (404), so that an office cannot learn which communities exist.
"""

from __future__ import annotations

from dataclasses import dataclass

from trace24.portal.accounts import User

# Roles that read the offices' lists (names, phones, masked ID numbers) of the communities in scope.
LIST_READERS = ("office", "street", "district", "city")


@dataclass(frozen=True)
class Community:
    community_code: str
    community_name: str
    street: str | None
    district: str

    @property
    def street_code(self) -> str:
        return self.community_code[:9]


def can_read_community(user: User, code: str, directory: dict[str, Community]) -> bool:
    community = directory.get(code)
    if community is None or user.role not in LIST_READERS:
        return False
    return (user.role == "city" or (user.role == "district" and community.district == user.scope)
            or (user.role == "street" and community.street_code == user.scope)
            or (user.role == "office" and code == user.scope))


def can_read_street(user: User, street_code: str, directory: dict[str, Community]) -> bool:
    members = [c for c in directory.values() if c.street_code == street_code]
    if not members:
        return False
    return (user.role == "city" or (user.role == "street" and user.scope == street_code)
            or (user.role == "district" and all(c.district == user.scope for c in members)))


def can_read_district(user: User, district: str, districts: set[str]) -> bool:
    """A district's dashboard (its unplaced persons among it): its command and the city's."""
    return district in districts and (user.role == "city" or (user.role == "district" and user.scope == district))


def home_path(user: User) -> str:
    """Where an account lands after logging in."""
    if user.role == "office":
        return f"/c/{user.scope}"
    if user.role == "street":
        return f"/s/{user.scope}"
    if user.role == "district":
        return f"/d/{user.scope}"
    if user.role == "city":
        return "/city"
    return "/epi"
