"""Marketing audiences: YAML rules over the profile, marketing consent, and a deterministic control group.

An audience is a SQL condition over `marts.user_profile` (operator-written configuration, like tags), with
`tag:<id>` as a shorthand for "carries this tag". Only people who may be marketed to become members; the
ones a rule selects but consent rules out are counted, never silently dropped. Each member is in the control
group when a hash of (audience, user_key) falls below the audience's control share, so assignment is stable
across runs and independent between audiences.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import yaml

from ml_assets.tags import TAG_ID, entry_lines

REQUIRED_FIELDS = ("name", "purpose", "description", "rule", "owner")
DEFAULT_CONTROL_SHARE = 0.1
# `tag:high_value`, or a family member such as `tag:bought_category:母婴` (no spaces, quotes or brackets).
TAG_SHORTHAND = re.compile(r"(?<![\w.])tag:([a-z][a-z0-9_]*(?::[^\s()',]+)?)")
QUOTED_TEXT = re.compile(r"('(?:[^']|'')*')")
MEMBER_COLUMNS = ("audience", "user_key", "is_control")
MATCH_TYPES = {
    "audience": "str",
    "user_key": "str",
    "has_marketing_consent": "bool",
    "has_profiling_consent": "bool",
}


class AudienceCatalogueError(ValueError):
    """An audience definition or rule is wrong; the message names the audience and its line."""


@dataclass(frozen=True)
class AudienceDefinition:
    name: str
    purpose: str
    description: str
    rule: str
    owner: str
    control_share: float
    line: int

    @property
    def sql_condition(self) -> str:
        return compile_rule(self.rule)


def compile_rule(rule: str) -> str:
    """Translate `tag:<id>` into DuckDB's `list_contains(tags, '<id>')`, leaving quoted text alone."""
    parts = QUOTED_TEXT.split(rule)
    return "".join(
        part if index % 2 else TAG_SHORTHAND.sub(lambda m: f"list_contains(tags, '{m.group(1)}')", part)
        for index, part in enumerate(parts)
    )


def referenced_tags(rule: str) -> list[str]:
    """Tag ids a rule names through the shorthand or a literal list_contains(tags, '...')."""
    compiled = compile_rule(rule)
    return sorted(set(re.findall(r"list_contains\(\s*tags\s*,\s*'((?:[^']|'')*)'\s*\)", compiled)))


def _control_share(entry: dict, where: str) -> float:
    raw = entry.get("control_share", DEFAULT_CONTROL_SHARE)
    try:
        share = float(raw)
    except (TypeError, ValueError) as error:
        raise AudienceCatalogueError(f"{where}: control_share {raw!r} is not a number") from error
    if not 0 <= share < 1:
        raise AudienceCatalogueError(f"{where}: control_share must be at least 0 and below 1, not {share}")
    return share


def load_audiences(path: Path) -> list[AudienceDefinition]:
    """Parse and check the catalogue: required fields, name format, unique names, a valid control share."""
    text = path.read_text(encoding="utf-8")
    try:
        document = yaml.safe_load(text) or {}
    except yaml.YAMLError as error:
        raise AudienceCatalogueError(f"{path}: not valid YAML: {error}") from error
    entries = document.get("audiences") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise AudienceCatalogueError(f"{path}: expected a top-level list `audiences:`")
    definitions, seen = [], {}
    for entry, line in zip(entries, entry_lines(text, "audiences"), strict=True):
        where = f"{path.name} line {line}"
        if not isinstance(entry, dict):
            raise AudienceCatalogueError(
                f"{where}: each audience must be a mapping with {', '.join(REQUIRED_FIELDS)}"
            )
        missing = [field for field in REQUIRED_FIELDS if not str(entry.get(field) or "").strip()]
        if missing:
            raise AudienceCatalogueError(
                f"audience {entry.get('name')!r} ({where}): missing {', '.join(missing)}"
            )
        name = str(entry["name"])
        where = f"audience {name!r} ({where})"
        if not TAG_ID.match(name):
            raise AudienceCatalogueError(f"{where}: name must be lowercase letters, digits and underscores")
        if name in seen:
            raise AudienceCatalogueError(f"{where}: already defined at line {seen[name]}")
        seen[name] = line
        definitions.append(
            AudienceDefinition(
                name=name,
                purpose=str(entry["purpose"]),
                description=str(entry["description"]),
                rule=str(entry["rule"]).strip(),
                owner=str(entry["owner"]),
                control_share=_control_share(entry, where),
                line=line,
            )
        )
    return definitions


def _describe(audience: AudienceDefinition, catalogue_name: str) -> str:
    return f"audience {audience.name!r} ({catalogue_name} line {audience.line})"


def check_tag_references(
    audiences: list[AudienceDefinition], known_tags: set[str], catalogue_name: str = "audiences.yml"
) -> None:
    """A misspelt tag would silently give an empty audience; name every unknown one instead."""
    errors = [
        f"{_describe(audience, catalogue_name)}: unknown tag {tag!r}"
        for audience in audiences
        for tag in referenced_tags(audience.rule)
        if tag not in known_tags
    ]
    if errors:
        raise AudienceCatalogueError("audience rule(s) name unknown tags:\n  " + "\n  ".join(errors))


def match_audiences(
    conn: duckdb.DuckDBPyConnection,
    audiences: list[AudienceDefinition],
    relation: str,
    catalogue_name: str = "audiences.yml",
) -> pd.DataFrame:
    """Everyone each rule selects, with their consent flags; all broken rules are reported together."""
    frames, errors = [], []
    for audience in audiences:
        sql = (
            "select $audience as audience, user_key,"
            " coalesce(has_marketing_consent, false) as has_marketing_consent,"
            " coalesce(has_profiling_consent, false) as has_profiling_consent"
            f" from {relation} where ({audience.sql_condition})"
        )
        try:
            frames.append(conn.execute(sql, {"audience": audience.name}).df())
        except duckdb.Error as error:
            errors.append(f"{_describe(audience, catalogue_name)}: {str(error).splitlines()[0]}")
    if errors:
        raise AudienceCatalogueError("bad audience rule(s):\n  " + "\n  ".join(errors))
    if not frames:
        return pd.DataFrame({column: pd.Series(dtype=dtype) for column, dtype in MATCH_TYPES.items()})
    return pd.concat(frames, ignore_index=True).astype(MATCH_TYPES)


def control_draws(audience: str, user_keys: pd.Series | list[str]) -> np.ndarray:
    """First 8 bytes of sha256(audience:user_key), big-endian, / 2^64: a uniform draw in [0, 1) per person."""
    prefix = f"{audience}:".encode()
    return np.array(
        [
            int.from_bytes(hashlib.sha256(prefix + str(key).encode()).digest()[:8], "big") / 2**64
            for key in user_keys
        ],
        dtype="float64",
    )


def assign_control(members: pd.DataFrame, control_shares: dict[str, float]) -> pd.Series:
    """is_control per (audience, user_key) row: the person's draw for that audience is below its share."""
    is_control = pd.Series(False, index=members.index, dtype="bool")
    for audience, rows in members.groupby("audience", sort=False):
        is_control.loc[rows.index] = (
            control_draws(str(audience), rows["user_key"]) < control_shares[str(audience)]
        )
    return is_control


def is_reachable(matches: pd.DataFrame) -> pd.Series:
    """Marketing needs marketing consent, and a profile-based selection also needs profiling consent."""
    return matches["has_marketing_consent"] & matches["has_profiling_consent"]


def audience_members(matches: pd.DataFrame, audiences: list[AudienceDefinition]) -> pd.DataFrame:
    """(audience, user_key, is_control) for every reachable person a rule selects."""
    reachable = matches.loc[is_reachable(matches), ["audience", "user_key"]].drop_duplicates()
    shares = {audience.name: audience.control_share for audience in audiences}
    members = reachable.assign(is_control=assign_control(reachable, shares))
    return members.astype({"audience": "str", "user_key": "str", "is_control": "bool"}).sort_values(
        ["audience", "user_key"], ignore_index=True
    )[list(MEMBER_COLUMNS)]


def audience_summary(
    audiences: list[AudienceDefinition], matches: pd.DataFrame, members: pd.DataFrame, as_of_date: date
) -> pd.DataFrame:
    """One row per audience: who the rule selected, who consent excluded, treatment and control sizes."""
    matched = matches.drop_duplicates(["audience", "user_key"])
    rows = []
    for audience in audiences:
        selected = matched[matched["audience"] == audience.name]
        in_audience = members[members["audience"] == audience.name]
        control = int(in_audience["is_control"].sum())
        rows.append(
            {
                "audience": audience.name,
                "purpose": audience.purpose,
                "description": audience.description,
                "rule": audience.rule,
                "owner": audience.owner,
                "control_share": audience.control_share,
                "matched_people": len(selected),
                "excluded_without_marketing_consent": int((~selected["has_marketing_consent"]).sum()),
                "excluded_without_profiling_consent": int(
                    (selected["has_marketing_consent"] & ~selected["has_profiling_consent"]).sum()
                ),
                "members": len(in_audience),
                "treatment_members": len(in_audience) - control,
                "control_members": control,
                "actual_control_share": control / len(in_audience) if len(in_audience) else float("nan"),
                "as_of_date": as_of_date,
            }
        )
    return pd.DataFrame(rows).astype({"as_of_date": "object"})


def append_membership_history(
    previous_history: pd.DataFrame | None, members: pd.DataFrame, as_of_date: date
) -> pd.DataFrame:
    """Add today's membership to the history, replacing rows already there for the same as-of date."""
    snapshot = members[list(MEMBER_COLUMNS)].assign(as_of_date=as_of_date)
    if previous_history is not None and not previous_history.empty:
        kept = previous_history[[*MEMBER_COLUMNS, "as_of_date"]].copy()
        kept["as_of_date"] = pd.to_datetime(kept["as_of_date"]).dt.date
        snapshot = pd.concat([kept[kept["as_of_date"] != as_of_date], snapshot], ignore_index=True)
    history = snapshot.astype(
        {"audience": "str", "user_key": "str", "is_control": "bool", "as_of_date": "object"}
    )
    return history.sort_values(["as_of_date", "audience", "user_key"], ignore_index=True)
