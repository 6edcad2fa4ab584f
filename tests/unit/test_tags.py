"""Tag catalogue: exact members on a hand-made profile, and errors that name the tag and line."""

from pathlib import Path

import duckdb
import pytest

from ml_assets.tags import TagCatalogueError, catalogue_frame, evaluate_tags, expand_families, load_catalogue

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def conn():
    connection = duckdb.connect()
    connection.execute(
        """
        create table base as select * from (values
            ('a', true, 5, 0.8, 'high'),
            ('b', true, 1, 0.1, 'low'),
            ('c', false, 9, 0.9, 'high'),
            ('d', true, 0, null, null)
        ) t(user_key, has_profiling_consent, frequency, coupon_use_rate, value_tier)
        """
    )
    connection.execute(
        "create table purchases as select * from"
        " (values ('a', '母婴'), ('b', '食品'), ('d', '母婴')) t(user_key, category)"
    )
    yield connection
    connection.close()


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tags.yml"
    path.write_text(text, encoding="utf-8")
    return path


ENTRY = "  - id: {id}\n    zh: 标签\n    en: Tag\n    description: d\n    owner: o\n    rule: {rule}\n"


def test_rules_select_exactly_the_consenting_people_who_match(conn, tmp_path):
    path = write(
        tmp_path,
        "tags:\n"
        + ENTRY.format(id="high_value", rule="value_tier = 'high'")
        + ENTRY.format(id="price_sensitive", rule="frequency >= 2 and coupon_use_rate >= 0.5")
        + "  - id: bought\n    zh: 购买过{value}\n    en: Bought {value}\n    description: d\n    owner: o\n"
        "    for_each: select distinct category from purchases order by 1\n"
        "    rule: user_key in (select user_key from purchases where category = $value)\n",
    )
    tags = expand_families(conn, load_catalogue(path))
    members = evaluate_tags(conn, tags, "base")
    assert sorted(map(tuple, members.to_numpy().tolist())) == [
        ("a", "bought:母婴"),
        ("a", "high_value"),
        ("a", "price_sensitive"),
        ("b", "bought:食品"),
        ("d", "bought:母婴"),
    ]
    catalogue = catalogue_frame(tags, members)
    assert dict(zip(catalogue["tag"], catalogue["members"], strict=True)) == {
        "high_value": 1,
        "price_sensitive": 1,
        "bought:母婴": 2,
        "bought:食品": 1,
    }
    assert catalogue.loc[catalogue["tag"] == "bought:食品", "label_zh"].item() == "购买过食品"


def test_a_value_that_looks_like_sql_is_only_ever_a_parameter(conn, tmp_path):
    conn.execute("insert into purchases values ('b', $$x' or 1=1 --$$)")
    path = write(
        tmp_path,
        "tags:\n  - id: bought\n    zh: z\n    en: e\n    description: d\n    owner: o\n"
        "    for_each: select distinct category from purchases order by 1\n"
        "    rule: user_key in (select user_key from purchases where category = $value)\n",
    )
    members = evaluate_tags(conn, expand_families(conn, load_catalogue(path)), "base")
    assert members.loc[members["tag"] == "bought:x' or 1=1 --", "user_key"].tolist() == ["b"]


def test_bad_rules_are_reported_together_with_tag_and_line(conn, tmp_path):
    path = write(
        tmp_path,
        "tags:\n"
        + ENTRY.format(id="ok_tag", rule="frequency > 0")
        + ENTRY.format(id="typo", rule="frequncy > 0")
        + ENTRY.format(id="broken", rule="frequency >"),
    )
    with pytest.raises(TagCatalogueError) as error:
        evaluate_tags(conn, expand_families(conn, load_catalogue(path)), "base")
    message = str(error.value)
    assert "tag 'typo' (tags.yml line 8)" in message and "frequncy" in message
    assert "tag 'broken' (tags.yml line 14)" in message
    assert "ok_tag" not in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tags:\n" + ENTRY.format(id="Bad-Id", rule="true"), "tag 'Bad-Id' (tags.yml line 2): id must be"),
        (
            "tags:\n" + ENTRY.format(id="x", rule="true") * 2,
            "tag 'x' (tags.yml line 8): already defined at line 2",
        ),
        (
            "tags:\n  - id: x\n    zh: z\n    rule: true\n",
            "tag 'x' (tags.yml line 2): missing en, description, owner",
        ),
        ("nothing: here\n", "expected a top-level list `tags:`"),
    ],
)
def test_catalogue_mistakes_name_the_tag_and_line(tmp_path, text, expected):
    with pytest.raises(TagCatalogueError, match=None) as error:
        load_catalogue(write(tmp_path, text))
    assert expected in str(error.value)


def test_the_shipped_catalogue_is_valid_and_large_enough():
    definitions = load_catalogue(REPO / "catalogue" / "tags.yml")
    plain = [d for d in definitions if d.for_each is None]
    assert len(plain) >= 25
    ids = {d.id for d in definitions}
    for required in (
        "high_value",
        "price_sensitive",
        "quality_seeking",
        "prefers_video",
        "night_owl",
        "recently_consulted",
        "super_sharer",
        "community_active",
        "silent_30_days",
        "new_this_week",
        "offline_store_customer",
        "bought_category",
    ):
        assert required in ids
