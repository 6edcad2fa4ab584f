"""The tag catalogue: tags defined as SQL conditions in YAML, compiled into (person, tag) rows.

Rules are operator-written configuration, evaluated against one relation (the profile base). Values from
data never reach the SQL text: a family of tags (`for_each`) binds each value as the parameter `$value`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd
import yaml

TAG_ID = re.compile(r"^[a-z][a-z0-9_]*$")
REQUIRED_FIELDS = ("id", "zh", "en", "description", "rule", "owner")


class TagCatalogueError(ValueError):
    """A tag definition or rule is wrong; the message names the tag and its line in the catalogue."""


@dataclass(frozen=True)
class TagDefinition:
    id: str
    zh: str
    en: str
    description: str
    rule: str
    owner: str
    line: int
    for_each: str | None = None


@dataclass(frozen=True)
class Tag:
    """One concrete tag: a definition, or one member of a family with its bound value."""

    tag: str
    definition: TagDefinition
    value: str | None = None

    @property
    def zh(self) -> str:
        return self.definition.zh.format(value=self.value)

    @property
    def en(self) -> str:
        return self.definition.en.format(value=self.value)


def entry_lines(text: str, list_key: str = "tags") -> list[int]:
    """1-based line of each entry under `<list_key>:`, so errors can point at the YAML (tags, audiences)."""
    root = yaml.compose(text)
    for key, value in root.value if isinstance(root, yaml.MappingNode) else []:
        if key.value == list_key and isinstance(value, yaml.SequenceNode):
            return [item.start_mark.line + 1 for item in value.value]
    return []


def load_catalogue(path: Path) -> list[TagDefinition]:
    """Parse and check the catalogue: required fields, id format, unique ids."""
    text = path.read_text(encoding="utf-8")
    try:
        document = yaml.safe_load(text) or {}
    except yaml.YAMLError as error:
        raise TagCatalogueError(f"{path}: not valid YAML: {error}") from error
    entries = document.get("tags")
    if not isinstance(entries, list):
        raise TagCatalogueError(f"{path}: expected a top-level list `tags:`")
    lines = entry_lines(text)
    definitions, seen = [], {}
    for entry, line in zip(entries, lines, strict=True):
        where = f"{path.name} line {line}"
        if not isinstance(entry, dict):
            raise TagCatalogueError(f"{where}: each tag must be a mapping with {', '.join(REQUIRED_FIELDS)}")
        missing = [name for name in REQUIRED_FIELDS if not str(entry.get(name) or "").strip()]
        if missing:
            raise TagCatalogueError(f"tag {entry.get('id')!r} ({where}): missing {', '.join(missing)}")
        tag_id = str(entry["id"])
        if not TAG_ID.match(tag_id):
            raise TagCatalogueError(
                f"tag {tag_id!r} ({where}): id must be lowercase letters, digits and underscores"
            )
        if tag_id in seen:
            raise TagCatalogueError(f"tag {tag_id!r} ({where}): already defined at line {seen[tag_id]}")
        seen[tag_id] = line
        definitions.append(
            TagDefinition(
                id=tag_id,
                zh=str(entry["zh"]),
                en=str(entry["en"]),
                description=str(entry["description"]),
                rule=str(entry["rule"]).strip(),
                owner=str(entry["owner"]),
                line=line,
                for_each=str(entry["for_each"]).strip() if entry.get("for_each") else None,
            )
        )
    return definitions


def _describe(definition: TagDefinition, catalogue_name: str) -> str:
    return f"tag {definition.id!r} ({catalogue_name} line {definition.line})"


def expand_families(
    conn: duckdb.DuckDBPyConnection, definitions: list[TagDefinition], catalogue_name: str = "tags.yml"
) -> list[Tag]:
    """One Tag per plain definition, and one per value of each family's `for_each` query."""
    tags: list[Tag] = []
    for definition in definitions:
        if definition.for_each is None:
            tags.append(Tag(definition.id, definition))
            continue
        try:
            values = [row[0] for row in conn.execute(definition.for_each).fetchall()]
        except duckdb.Error as error:
            raise TagCatalogueError(
                f"{_describe(definition, catalogue_name)}: for_each failed: {error}"
            ) from error
        tags.extend(Tag(f"{definition.id}:{value}", definition, str(value)) for value in values)
    return tags


def evaluate_tags(
    conn: duckdb.DuckDBPyConnection, tags: list[Tag], relation: str, catalogue_name: str = "tags.yml"
) -> pd.DataFrame:
    """(user_key, tag) for every person a rule selects; all broken rules are reported together."""
    frames, errors = [], []
    for tag in tags:
        sql = f"select user_key, $tag as tag from {relation} where has_profiling_consent and ({tag.definition.rule})"
        parameters = {"tag": tag.tag}
        if "$value" in tag.definition.rule:
            parameters["value"] = tag.value
        try:
            frames.append(conn.execute(sql, parameters).df())
        except duckdb.Error as error:
            errors.append(f"{_describe(tag.definition, catalogue_name)}: {str(error).splitlines()[0]}")
    if errors:
        raise TagCatalogueError("bad tag rule(s):\n  " + "\n  ".join(errors))
    if not frames:
        return pd.DataFrame({"user_key": pd.Series(dtype="str"), "tag": pd.Series(dtype="str")})
    return pd.concat(frames, ignore_index=True).sort_values(["user_key", "tag"], ignore_index=True)


def catalogue_frame(tags: list[Tag], members: pd.DataFrame) -> pd.DataFrame:
    """The published catalogue: one row per concrete tag with its labels, rule and member count."""
    counts = members["tag"].value_counts()
    return pd.DataFrame(
        {
            "tag": [t.tag for t in tags],
            "tag_family": [t.definition.id for t in tags],
            "label_zh": [t.zh for t in tags],
            "label_en": [t.en for t in tags],
            "description": [t.definition.description for t in tags],
            "rule": [t.definition.rule for t in tags],
            "owner": [t.definition.owner for t in tags],
            "members": [int(counts.get(t.tag, 0)) for t in tags],
        }
    )
