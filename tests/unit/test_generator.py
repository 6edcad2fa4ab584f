"""The sample data generator: reproducible bytes, contract-shaped files, and truth that matches the data.

The landing files are re-read here independently of the generator's own bookkeeping: JSON lines and CSV rows
are classified with the contract's rules and compared with what `_truth/` claims was planted.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import re
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ml_assets.lifecycle import LifecycleConfig, classify_lifecycle
from orchestration import generator as g

PEOPLE, SEED = 300, 20260630
END = date(2026, 6, 30)
SHANGHAI = timedelta(hours=8)
EVENT_TYPES = {"track", "page", "screen", "identify", "alias"}
CHANNELS = {"miniprogram", "official_account", "app", "web", "offline_store"}
CSV_HEADERS = {
    "users": "user_id,phone,unionid,gender,birth_date,province,city,registered_at,member_level,updated_at",
    "orders": (
        "order_id,user_id,phone,channel,store_id,status,ordered_at,paid_amount,discount_amount,coupon_code,updated_at"
    ),
    "order_items": "order_id,line_no,product_id,quantity,unit_price",
    "products": "product_id,product_name,category,brand,list_price,updated_at",
    "consents": "user_id,purpose,granted,recorded_at",
}
Z_FORMAT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
OFFSET_FORMAT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\+08:00$")
NAIVE_FORMAT = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")


# --- fixtures: one generated data set (and its twin for determinism) -----------------------------


@pytest.fixture(scope="module")
def landing(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("landing")
    summary = g.generate(PEOPLE, SEED, out, progress=False)
    assert summary.people == PEOPLE and summary.as_of == END and summary.out == out
    return out


@pytest.fixture(scope="module")
def truth(landing) -> dict:
    def read(name: str) -> list[dict[str, str]]:
        return list(csv.DictReader(open(landing / "_truth" / name, encoding="utf-8")))

    return {
        "persons": {r["person_id"]: r for r in read("persons.csv")},
        "identifiers": read("identifiers.csv"),
        "shared": read("shared_identifiers.csv"),
        "bad": {(r["source_file"], int(r["line_number"])): r["kind"] for r in read("bad_records.csv")},
        "referrals": read("referrals.csv"),
        "orders": {r["order_id"]: r for r in read("orders.csv")},
        "summary": json.loads((landing / "_truth" / "summary.json").read_text()),
    }


def _read_bytes(path: Path) -> bytes:
    return gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else path.read_bytes()


@pytest.fixture(scope="module")
def event_lines(landing) -> list[tuple[str, int, str]]:
    """(relative file, 1-based line, text) for every event line, in landing (path, line) order."""
    lines = []
    for path in sorted((landing / "events").rglob("*.jsonl*")):
        rel = path.relative_to(landing).as_posix()
        for number, text in enumerate(_read_bytes(path).decode("utf-8").split("\n")[:-1], start=1):
            lines.append((rel, number, text))
    return lines


def _csv_rows(landing: Path, folder: str) -> list[tuple[str, int, dict[str, str]]]:
    rows = []
    for path in sorted((landing / folder).glob("*.csv")):
        rel = path.relative_to(landing).as_posix()
        reader = csv.DictReader(io.StringIO(path.read_bytes().decode("utf-8-sig")))
        rows.extend((rel, number, row) for number, row in enumerate(reader, start=2))
    return rows


@pytest.fixture(scope="module")
def good_events(event_lines, truth) -> list[tuple[str, int, dict]]:
    return [(f, n, json.loads(t)) for f, n, t in event_lines if (f, n) not in truth["bad"]]


@pytest.fixture(scope="module")
def latest_orders(landing, truth) -> dict[str, dict[str, str]]:
    """Latest snapshot per order id among the good rows (greatest updated_at wins)."""
    latest: dict[str, dict[str, str]] = {}
    for rel, number, row in _csv_rows(landing, "orders"):
        if (rel, number) in truth["bad"]:
            continue
        current = latest.get(row["order_id"])
        if current is None or row["updated_at"] > current["updated_at"]:
            latest[row["order_id"]] = row
    return latest


def _utc(text: str) -> datetime:
    """Contract timestamp to aware UTC: an offset is exact, no offset means Asia/Shanghai."""
    if text.endswith("Z"):
        return datetime.fromisoformat(text[:-1]).replace(tzinfo=UTC)
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        return (parsed - SHANGHAI).replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _local_date(moment: datetime) -> date:
    return (moment + SHANGHAI).date()


def _hash_tree(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


# --- determinism ----------------------------------------------------------------------------------


def test_same_seed_gives_byte_identical_files(landing, tmp_path):
    twin = tmp_path / "twin"
    g.generate(PEOPLE, SEED, twin, progress=False)
    assert _hash_tree(twin) == _hash_tree(landing)


def test_a_different_seed_gives_different_data(landing, tmp_path):
    other = tmp_path / "other"
    g.generate(PEOPLE, SEED + 1, other, progress=False)
    ours, theirs = _hash_tree(landing), _hash_tree(other)
    assert ours["_truth/persons.csv"] != theirs["_truth/persons.csv"]
    shared = set(ours) & set(theirs)
    assert sum(ours[k] == theirs[k] for k in shared) <= 2  # at most the catalogue can coincide by chance


def test_existing_output_is_not_overwritten_silently(landing):
    with pytest.raises(FileExistsError):
        g.generate(5, SEED, landing, progress=False)


def test_short_window_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="365"):
        g.generate(10, 1, tmp_path / "x", start=date(2026, 1, 1), end=date(2026, 6, 30), progress=False)


# --- layout and formats ---------------------------------------------------------------------------


def test_folders_and_file_names_follow_the_layout(landing):
    assert {p.name for p in landing.iterdir()} == {*g.CONTRACT_FOLDERS, "_truth"}
    event_files = [p.relative_to(landing).as_posix() for p in (landing / "events").rglob("*") if p.is_file()]
    assert all(re.fullmatch(r"events/\d{4}/\d{2}/\d{2}/events\.jsonl(\.gz)?", f) for f in event_files)
    gz_share = sum(f.endswith(".gz") for f in event_files) / len(event_files)
    assert 0.25 < gz_share < 0.42
    patterns = {
        "orders": r"orders_\d{4}-\d{2}-\d{2}\.csv",
        "order_items": r"order_items_\d{4}-\d{2}-\d{2}\.csv",
        "users": r"users_\d{4}-\d{2}\.csv",
        "products": r"products_\d{4}-\d{2}\.csv",
        "consents": r"consents_\d{4}-\d{2}\.csv",
    }
    for folder, pattern in patterns.items():
        names = [p.name for p in (landing / folder).iterdir()]
        assert names and all(re.fullmatch(pattern, n) for n in names), folder
    assert not (landing / "erasure_requests").exists()


def test_csv_headers_are_exactly_the_contract_columns_and_some_files_have_a_bom(landing):
    boms = 0
    for folder, header in CSV_HEADERS.items():
        for path in (landing / folder).glob("*.csv"):
            data = path.read_bytes()
            boms += data.startswith(b"\xef\xbb\xbf")
            assert data.decode("utf-8-sig").split("\n", 1)[0] == header, path
    assert boms >= 3


def test_money_has_two_decimals_and_csv_times_are_local_without_offset(landing, truth):
    money = re.compile(r"^-?\d+\.\d{2}$")
    for rel, number, row in _csv_rows(landing, "orders"):
        if (rel, number) in truth["bad"]:
            continue
        assert money.match(row["paid_amount"]) and money.match(row["discount_amount"])
        assert NAIVE_FORMAT.match(row["ordered_at"]) and NAIVE_FORMAT.match(row["updated_at"])
    for _, _, row in _csv_rows(landing, "products"):
        assert money.match(row["list_price"]) and NAIVE_FORMAT.match(row["updated_at"])


def test_catalogue_has_200_to_400_products_in_the_eight_categories(landing):
    rows = _csv_rows(landing, "products")
    first_snapshot = {r["product_id"] for f, _, r in rows if f.endswith("2025-01.csv")}
    assert 200 <= len(first_snapshot) <= 400
    assert {r["category"] for _, _, r in rows} == set(g.CATEGORY_NAMES)
    later = [r for f, _, r in rows if not f.endswith("2025-01.csv")]
    assert later and {r["product_id"] for r in later} <= first_snapshot


def test_users_gender_mixes_codes_and_chinese(landing):
    genders = Counter(r["gender"] for _, _, r in _csv_rows(landing, "users"))
    assert set(genders) == {"M", "F", "U", "男", "女"}


def test_event_timestamps_mix_the_three_shapes(good_events):
    shapes = Counter(
        "z"
        if Z_FORMAT.match(e["timestamp"])
        else "offset"
        if OFFSET_FORMAT.match(e["timestamp"])
        else "naive"
        for _, _, e in good_events
    )
    total = sum(shapes.values())
    assert shapes["z"] / total > 0.7 and shapes["offset"] / total > 0.05 and shapes["naive"] / total > 0.03


# --- events conform to the contract ---------------------------------------------------------------


def test_every_good_event_line_conforms_to_the_contract(good_events):
    assert len(good_events) > 20_000
    for _, _, e in good_events:
        assert isinstance(e["messageId"], str) and 0 < len(e["messageId"]) <= 128
        assert e["type"] in EVENT_TYPES
        assert (
            Z_FORMAT.match(e["timestamp"])
            or OFFSET_FORMAT.match(e["timestamp"])
            or NAIVE_FORMAT.match(e["timestamp"])
        )
        assert _utc(e["timestamp"]).date() <= END
        assert e.get("userId") or e.get("anonymousId")
        assert e["context"]["channel"] in CHANNELS
        if e["type"] == "track":
            assert isinstance(e["event"], str) and e["event"] and isinstance(e["properties"], dict)
        elif e["type"] in ("page", "screen"):
            assert e["name"] and e["properties"]["path"] and e["properties"]["duration_ms"] > 0
        elif e["type"] == "identify":
            assert isinstance(e["traits"], dict) and e.get("userId")
        else:
            assert e["previousId"] == e["anonymousId"] and e.get("userId")


def test_events_cover_the_contract_vocabulary(good_events):
    names = Counter(e.get("event") for _, _, e in good_events if e["type"] == "track")
    required = {
        "Products Searched",
        "Product Viewed",
        "Product Added",
        "Checkout Started",
        "Order Completed",
        "Coupon Received",
        "Coupon Applied",
        "Content Viewed",
        "Content Shared",
        "Product Shared",
        "Consultation Started",
        "Group Message Sent",
    }
    assert required <= set(names)
    assert (
        set(names) - required - {"Product Removed", "Product Added to Wishlist", "Product Reviewed"}
    )  # custom
    content_types = {
        e["properties"]["content_type"] for _, _, e in good_events if e.get("event") == "Content Viewed"
    }
    assert content_types == {"article", "video", "live"}
    scenes = {e["context"].get("wechat", {}).get("scene") for _, _, e in good_events}
    assert {1001, 1007, 1008, 1011, 1047, 1089} <= scenes
    assert any("campaign" in e["context"] for _, _, e in good_events)
    assert {e["context"]["channel"] for _, _, e in good_events} == CHANNELS
    appids = {e["context"]["wechat"]["appid"] for _, _, e in good_events if "wechat" in e["context"]}
    assert appids == {g.MP_APPID, g.OA_APPID}


def test_no_activity_is_planted_on_the_as_of_day(good_events, latest_orders):
    assert max(_local_date(_utc(e["timestamp"])) for _, _, e in good_events) < END
    assert max(r["updated_at"][:10] for r in latest_orders.values()) < END.isoformat()


# --- planted noise matches the truth exactly ------------------------------------------------------


def _event_line_kind(text: str) -> str | None:
    """Classify one line with the contract's rules, independently of the generator."""
    try:
        record = json.loads(text)
    except json.JSONDecodeError:
        return "truncated_json"
    if not isinstance(record.get("messageId"), str) or not record["messageId"]:
        return "missing_message_id"
    if record.get("type") not in EVENT_TYPES:
        return "unknown_type"
    try:
        _utc(record["timestamp"])
    except (ValueError, TypeError, KeyError):
        return "unparsable_timestamp"
    if not record.get("userId") and not record.get("anonymousId"):
        return "missing_user_and_anonymous_id"
    return None


def _csv_row_kind(folder: str, row: dict[str, str]) -> str | None:
    if folder == "order_items" and int(row["quantity"]) < 0:
        return "negative_quantity"
    if folder == "orders":
        try:
            Decimal(row["paid_amount"])
        except InvalidOperation:
            return "non_numeric_amount"
        try:
            datetime.strptime(row["ordered_at"], "%Y-%m-%d %H:%M:%S")
        except ValueError:
            return "unparsable_date"
    return None


def test_bad_records_found_independently_equal_the_truth(landing, event_lines, truth):
    found = {(f, n): kind for f, n, t in event_lines if (kind := _event_line_kind(t))}
    for folder in ("orders", "order_items", "users", "consents", "products"):
        for rel, number, row in _csv_rows(landing, folder):
            if kind := _csv_row_kind(folder, row):
                found[(rel, number)] = kind
    assert found == truth["bad"]
    assert set(found.values()) == set(g.BAD_EVENT_KINDS) | set(g.BAD_CSV_KINDS)
    share = len(found) / sum(truth["summary"]["records_per_folder"].values())
    assert 0.001 < share < 0.006
    assert truth["summary"]["bad_records"] == dict(Counter(found.values()))


def test_duplicates_found_independently_equal_the_truth(good_events, truth):
    seen: set[str] = set()
    per_file: Counter[str] = Counter()
    crossing = 0
    first_file: dict[str, str] = {}
    for rel, _, e in good_events:
        if e["messageId"] in seen:
            per_file[rel] += 1
            crossing += first_file[e["messageId"]] != rel
        else:
            seen.add(e["messageId"])
            first_file[e["messageId"]] = rel
    summary = truth["summary"]
    assert sum(per_file.values()) == summary["duplicate_events"]
    assert {f: s["duplicates"] for f, s in summary["files"].items() if s["duplicates"]} == dict(per_file)
    assert len(seen) == summary["unique_events"]
    assert 0.005 < summary["duplicate_events"] / len(good_events) < 0.02
    assert crossing > 0  # some retries land in a later day's file


def test_summary_line_counts_match_the_files(landing, event_lines, truth):
    counts = Counter(f for f, _, _ in event_lines)
    for folder in ("orders", "order_items", "users", "consents", "products"):
        counts.update(rel for rel, _, _ in _csv_rows(landing, folder))
    assert {f: s["lines"] for f, s in truth["summary"]["files"].items()} == dict(counts)
    by_folder = Counter()
    for f, n in counts.items():
        by_folder[f.split("/")[0]] += n
    assert truth["summary"]["records_per_folder"] == dict(by_folder)


# --- orders ---------------------------------------------------------------------------------------


def test_order_items_add_up_to_paid_amount(landing, truth, latest_orders):
    subtotal: dict[str, Decimal] = defaultdict(Decimal)
    for rel, number, row in _csv_rows(landing, "order_items"):
        if (rel, number) not in truth["bad"]:
            subtotal[row["order_id"]] += int(row["quantity"]) * Decimal(row["unit_price"])
    assert set(subtotal) == set(latest_orders)
    for order_id, row in latest_orders.items():
        assert subtotal[order_id] - Decimal(row["discount_amount"]) == Decimal(row["paid_amount"]) > 0
        assert bool(row["coupon_code"]) == (Decimal(row["discount_amount"]) > 0)


def test_offline_orders_carry_a_phone_and_store_but_no_user_id(latest_orders):
    offline = [r for r in latest_orders.values() if r["channel"] == "offline_store"]
    online = [r for r in latest_orders.values() if r["channel"] != "offline_store"]
    assert offline and online
    assert all(
        r["user_id"] == "" and re.fullmatch(r"1[3-9]\d{9}", r["phone"]) and r["store_id"] for r in offline
    )
    assert all(
        r["user_id"] and r["channel"] in {"miniprogram", "app"} and r["store_id"] == "" for r in online
    )


def test_refunds_and_cancellations_are_later_snapshots(landing, truth, latest_orders):
    snapshots = defaultdict(list)
    for rel, number, row in _csv_rows(landing, "orders"):
        if (rel, number) not in truth["bad"]:
            snapshots[row["order_id"]].append((rel, row))
    changed = {k: v for k, v in snapshots.items() if len(v) > 1}
    assert changed
    for versions in changed.values():
        (first_file, first), (second_file, second) = sorted(versions, key=lambda v: v[1]["updated_at"])
        assert first["status"] == "paid" and second["status"] in {"refunded", "cancelled"}
        assert second["updated_at"] > first["updated_at"] and second_file >= first_file
    assert {r["status"] for r in latest_orders.values()} == {"paid", "refunded", "cancelled"}


def test_order_completed_events_match_online_orders(good_events, latest_orders):
    completed = {}
    for _, _, e in good_events:
        if e.get("event") == "Order Completed":
            completed[e["properties"]["order_id"]] = e
    online = {k: r for k, r in latest_orders.items() if r["channel"] != "offline_store"}
    assert set(completed) == set(online)
    for order_id, e in completed.items():
        row, props = online[order_id], e["properties"]
        assert Decimal(str(props["revenue"])) == Decimal(row["paid_amount"])
        assert Decimal(str(props["discount"])) == Decimal(row["discount_amount"])
        assert (props["coupon"] or "") == row["coupon_code"]
        assert e["userId"] == row["user_id"]
        assert abs(_utc(e["timestamp"]) - _utc(row["ordered_at"])) < timedelta(seconds=1)


# --- identities -----------------------------------------------------------------------------------


def _identifiers_in_data(landing: Path, good_events) -> set[tuple[str, str]]:
    found = set()
    for _, _, e in good_events:
        for key, kind in (
            ("userId", "user_id"),
            ("anonymousId", "anonymous_id"),
            ("previousId", "anonymous_id"),
        ):
            if e.get(key):
                found.add((kind, e[key]))
        wechat = e["context"].get("wechat", {})
        for key in ("openid", "unionid"):
            if key in wechat:
                found.add((key, wechat[key]))
        if e.get("traits", {}).get("phone"):
            found.add(("phone", e["traits"]["phone"]))
    for folder, columns in (("users", ("user_id", "phone", "unionid")), ("orders", ("user_id", "phone"))):
        for _, _, row in _csv_rows(landing, folder):
            found.update((c, row[c]) for c in columns if row[c])
    return found


def test_every_truth_identifier_appears_in_the_data(landing, good_events, truth):
    in_data = _identifiers_in_data(landing, good_events)
    listed = {(r["identifier_type"], r["identifier_value"]) for r in truth["identifiers"]}
    assert listed <= in_data
    assert {r["identifier_type"] for r in truth["identifiers"]} == {
        "user_id",
        "anonymous_id",
        "openid",
        "unionid",
        "phone",
    }
    shared = {(r["identifier_type"], r["identifier_value"]) for r in truth["shared"]}
    assert shared <= in_data and not shared & listed
    owners = Counter((r["identifier_type"], r["identifier_value"]) for r in truth["identifiers"])
    assert max(owners.values()) == 1  # each listed identifier belongs to one person


def test_registered_people_have_wechat_and_crm_identifiers(truth):
    kinds = defaultdict(set)
    for r in truth["identifiers"]:
        kinds[r["person_id"]].add(r["identifier_type"])
    registered = [p for p, r in truth["persons"].items() if r["crm_user_id"]]
    anonymous = [p for p, r in truth["persons"].items() if not r["crm_user_id"]]
    assert registered and anonymous
    assert all({"user_id", "unionid"} <= kinds[p] for p in registered)
    assert all(not {"user_id", "unionid", "phone"} & kinds[p] for p in anonymous)
    assert all(
        r["lifecycle_stage"] == "prospect" for p, r in truth["persons"].items() if not r["crm_user_id"]
    )


def test_pre_login_events_carry_only_the_device_id(good_events):
    anonymous = [e for _, _, e in good_events if not e.get("userId")]
    assert anonymous and all(e["anonymousId"] for e in anonymous)
    assert all("unionid" not in e["context"].get("wechat", {}) for e in anonymous)
    assert any("openid" in e["context"].get("wechat", {}) for e in anonymous)
    assert any(e["type"] == "identify" and e["traits"].get("phone") for _, _, e in good_events)


def test_shared_device_is_logged_in_by_two_people_and_store_phone_spans_many(
    good_events, latest_orders, truth
):
    shared = {(r["identifier_type"], r["identifier_value"]): int(r["person_count"]) for r in truth["shared"]}
    devices = [v for (t, v) in shared if t == "anonymous_id"]
    assert devices
    for device in devices:
        users = {e["userId"] for _, _, e in good_events if e.get("anonymousId") == device and e.get("userId")}
        assert len(users) == 2
    ((store_phone, count),) = [(v, c) for (t, v), c in shared.items() if t == "phone"]
    guest_orders = [r for r in latest_orders.values() if r["phone"] == store_phone]
    assert len(guest_orders) >= 2 and all(r["user_id"] == "" for r in guest_orders)
    via_truth = {truth["orders"][r["order_id"]]["person_id"] for r in guest_orders}
    assert len(via_truth) >= 2 and count >= len(via_truth)


def test_referred_visitors_arrive_through_the_sharers_card(good_events, truth):
    ids = defaultdict(set)
    owner = {}
    for r in truth["identifiers"]:
        ids[r["person_id"]].add(r["identifier_value"])
        owner[r["identifier_value"]] = r["person_id"]
    first_event = {}
    for _, _, e in good_events:
        person = _person_of(e, owner)
        moment = _utc(e["timestamp"])
        if person and (person not in first_event or moment < first_event[person][0]):
            first_event[person] = (moment, e)
    assert len(truth["referrals"]) >= 10
    for r in truth["referrals"]:
        _, e = first_event[r["visitor_person_id"]]
        assert e["context"]["referrer"]["type"] == "share"
        assert e["context"]["referrer"]["id"] in ids[r["sharer_person_id"]]
        assert e["context"]["wechat"]["scene"] in (1007, 1008)
        assert truth["persons"][r["sharer_person_id"]]["persona"] == "community_sharer"


def _proven_links(landing: Path, good_events, truth) -> list[tuple[tuple[str, str], tuple[str, str]]]:
    """Identifier pairs the written records prove, restating the warehouse's identity-edge rules."""
    links = []
    for _, _, e in good_events:
        user = ("user_id", e["userId"]) if e.get("userId") else None
        device = ("anonymous_id", e["anonymousId"]) if e.get("anonymousId") else None
        holder = user or device
        wechat = e["context"].get("wechat", {})
        if user and device:
            links.append((user, device))
        if wechat.get("openid"):
            openid = ("openid", wechat["openid"])
            links.append((openid, holder))
            if wechat.get("unionid"):
                links.append((openid, ("unionid", wechat["unionid"])))
        if e["type"] == "identify" and e["traits"].get("phone"):
            links.append((("phone", e["traits"]["phone"]), holder))
        if e["type"] == "alias" and e.get("previousId"):
            links.append((("anonymous_id", e["previousId"]), holder))
    for _, _, row in _csv_rows(landing, "users"):
        for kind in ("phone", "unionid"):
            if row[kind]:
                links.append((("user_id", row["user_id"]), (kind, row[kind])))
    for rel, number, row in _csv_rows(landing, "orders"):
        if (rel, number) not in truth["bad"] and row["user_id"] and row["phone"]:
            links.append((("user_id", row["user_id"]), ("phone", row["phone"])))
    return links


def _components(links, excluded: set[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """Connected components by breadth-first search, a different algorithm from the generator's."""
    neighbours = defaultdict(set)
    for one, other in links:
        if one not in excluded and other not in excluded and one != other:
            neighbours[one].add(other)
            neighbours[other].add(one)
    component: dict[tuple[str, str], int] = {}
    for start in sorted(neighbours):
        if start in component:
            continue
        component[start], queue = len(component), [start]
        label = component[start]
        while queue:
            node = queue.pop()
            for nxt in neighbours[node] - component.keys():
                component[nxt] = label
                queue.append(nxt)
    return component


def test_linkable_flags_match_what_the_written_records_prove(landing, good_events, truth):
    shared = {(r["identifier_type"], r["identifier_value"]) for r in truth["shared"]}
    component = _components(_proven_links(landing, good_events, truth), shared)
    owner = {r["identifier_value"]: r["person_id"] for r in truth["identifiers"]}
    first_event = {}
    for _, _, e in good_events:
        person, moment = _person_of(e, owner), _utc(e["timestamp"])
        if person and (person not in first_event or moment < first_event[person][0]):
            first_event[person] = (moment, e)
    anchor = {
        person: ("user_id", r["crm_user_id"])
        if r["crm_user_id"]
        else ("anonymous_id", first_event[person][1]["anonymousId"])
        for person, r in truth["persons"].items()
    }
    flags = Counter()
    for r in truth["identifiers"]:
        identifier = (r["identifier_type"], r["identifier_value"])
        home = component.get(anchor[r["person_id"]])
        expected = identifier == anchor[r["person_id"]] or (
            home is not None and component.get(identifier) == home
        )
        assert r["linkable"] == ("true" if expected else "false"), r
        flags[r["linkable"], r["identifier_type"]] += 1
    assert sum(n for (flag, _), n in flags.items() if flag == "false") >= 3  # some devices stay anonymous
    assert flags["false", "user_id"] == flags["false", "unionid"] == flags["false", "phone"] == 0
    people_per_component = defaultdict(set)
    for r in truth["identifiers"]:
        if r["linkable"] == "true":
            people_per_component[component.get((r["identifier_type"], r["identifier_value"]))].add(
                r["person_id"]
            )
    people_per_component.pop(None, None)  # an anchor proven by no link at all is alone
    assert all(len(people) == 1 for people in people_per_component.values())  # no person bleeds into another


def test_linked_identifiers_follow_chains_of_links_from_the_anchor():
    user, phone, device, web, openid, unionid = (
        ("user_id", "U1"),
        ("phone", "13800000000"),
        ("anonymous_id", "d1"),
        ("anonymous_id", "w1"),
        ("openid", "o1"),
        ("unionid", "un1"),
    )
    links = [(openid, device), (device, user), (phone, user), (openid, unionid)]
    assert g.linked_identifiers(user, links) == {user, phone, device, openid, unionid}
    assert web not in g.linked_identifiers(user, links)
    assert g.linked_identifiers(web, links) == {web}
    assert g.linked_identifiers(phone, [(openid, unionid)]) == {phone}
    assert g.linked_identifiers(unionid, [(openid, device), (openid, unionid)]) == {unionid, openid, device}


# --- truth about people matches their history -----------------------------------------------------


def _paid_history(truth, latest_orders) -> dict[str, list[dict[str, str]]]:
    """Paid orders per person: by user_id, then phone, then the truth for guests on the store's phone."""
    by_user = {r["crm_user_id"]: p for p, r in truth["persons"].items() if r["crm_user_id"]}
    by_phone = {
        r["identifier_value"]: r["person_id"] for r in truth["identifiers"] if r["identifier_type"] == "phone"
    }
    history = defaultdict(list)
    for order_id, row in latest_orders.items():
        person = by_user.get(row["user_id"]) or by_phone.get(row["phone"])
        if person is None:
            assert truth["orders"][order_id]["via_shared_phone"] == "true"
            person = truth["orders"][order_id]["person_id"]
        assert person == truth["orders"][order_id]["person_id"]
        if row["status"] == "paid":
            history[person].append(row)
    return history


def test_person_order_facts_match_the_orders_written(truth, latest_orders):
    history = _paid_history(truth, latest_orders)
    for person, r in truth["persons"].items():
        paid = history.get(person, [])
        assert int(r["paid_orders"]) == len(paid)
        assert Decimal(r["monetary"]) == sum((Decimal(o["paid_amount"]) for o in paid), Decimal("0.00"))
        last = max((_utc(o["ordered_at"]) for o in paid), default=None)
        assert r["last_paid_at"] == (last.strftime("%Y-%m-%dT%H:%M:%S.000Z") if last else "")


def _person_of(event: dict, owner: dict[str, str]) -> str | None:
    """Whose event this is: by userId, then device, then openid (a shared device is in no one's list)."""
    wechat = event["context"].get("wechat", {})
    return (
        owner.get(event.get("userId"))
        or owner.get(event.get("anonymousId"))
        or owner.get(wechat.get("openid"))
    )


def _days_before_end(moments) -> list[int]:
    return sorted((END - _local_date(m)).days for m in moments)


@pytest.fixture(scope="module")
def lifecycle_facts(truth, latest_orders, good_events) -> dict[str, dict]:
    """Per person, the day counts the lifecycle rules read, from the written events and orders."""
    history = _paid_history(truth, latest_orders)
    owner = {r["identifier_value"]: r["person_id"] for r in truth["identifiers"]}
    first_event, last_event = {}, {}
    for _, _, e in good_events:
        person = _person_of(e, owner)
        if person:
            moment = _utc(e["timestamp"])
            first_event[person] = min(first_event.get(person, moment), moment)
            last_event[person] = max(last_event.get(person, moment), moment)
    facts = {}
    for person in truth["persons"]:
        orders = history.get(person, [])
        # guest orders on the store's phone cannot be attributed by any pipeline
        visible = [o for o in orders if truth["orders"][o["order_id"]]["via_shared_phone"] == "false"]
        days = _days_before_end(_utc(o["ordered_at"]) for o in orders)
        visible_days = _days_before_end(_utc(o["ordered_at"]) for o in visible)
        gaps = np.diff(visible_days)
        facts[person] = {
            "days": days,
            "visible_days": visible_days,
            "since_first_seen": (END - _local_date(first_event[person])).days,
            "since_event": (END - _local_date(last_event[person])).days,
            "since_activity": min([(END - _local_date(last_event[person])).days, *visible_days]),
            "median_interval": float(np.median(gaps)) if len(gaps) else None,
        }
    return facts


def test_lifecycle_stage_is_consistent_with_the_history(truth, lifecycle_facts):
    stages = Counter()
    for person, r in truth["persons"].items():
        stage, clear = r["lifecycle_stage"], r["is_clear_cut"] == "true"
        stages[stage] += 1
        facts = lifecycle_facts[person]
        days, n = facts["days"], len(facts["days"])
        if stage == "prospect":
            assert n == 0 and facts["since_activity"] < 180
        elif stage == "new":
            assert n == 1 and 3 <= days[0] <= 20 and (not clear or 5 <= days[0] <= 18)
        elif stage == "growing":
            assert 2 <= n <= 3 and days[0] <= 30 and 60 <= days[-1] <= 150
        elif stage == "mature":
            assert n >= 6 and days[0] <= 20 and (not clear or days[0] <= 15)
            gaps = np.diff(days)
            assert gaps.max() <= 40  # a regular rhythm
        elif stage == "declining":
            assert n >= 5 and 90 <= days[0] <= 150 and np.diff(days).max() <= 35
            assert facts["since_event"] <= 30  # still visits
        else:
            assert stage == "churned" and n >= 1
            assert facts["since_event"] >= 200
            assert days[0] >= 200
    assert set(stages) == set(g.LIFECYCLES)
    clear_share = sum(r["is_clear_cut"] == "true" for r in truth["persons"].values()) / PEOPLE
    assert 0.8 < clear_share < 0.97


RULES = LifecycleConfig()
MARGIN_DAYS = 15


def _lapse_threshold(median_interval: float | None) -> float:
    """The classifier's lapse threshold, restated: max(declining_min_days, multiple x median interval)."""
    if median_interval is None:
        return RULES.declining_min_days
    return max(RULES.declining_min_days, RULES.declining_interval_multiple * median_interval)


def test_clear_cut_people_sit_well_inside_the_lifecycle_rules(truth, lifecycle_facts):
    """Clear-cut means no threshold of the lifecycle rules is within MARGIN_DAYS of deciding otherwise."""
    checked = Counter()
    for person, r in truth["persons"].items():
        if r["is_clear_cut"] != "true":
            continue
        stage, facts = r["lifecycle_stage"], lifecycle_facts[person]
        checked[stage] += 1
        days, visible = facts["days"], facts["visible_days"]
        n = len(visible)
        threshold = _lapse_threshold(facts["median_interval"])
        if stage == "churned":
            assert facts["since_activity"] >= RULES.churn_days + MARGIN_DAYS, person
            continue
        assert facts["since_activity"] <= RULES.churn_days - 30, person
        if stage == "prospect":
            assert n == 0, person
            continue
        since_first_paid, since_last_paid = visible[-1], visible[0]
        if stage == "new":
            assert n == 1 and since_first_paid <= RULES.new_days - 10, person
            continue
        assert since_first_paid >= RULES.new_days + MARGIN_DAYS, person
        if stage == "declining":
            assert n >= 5 and since_last_paid >= threshold + MARGIN_DAYS, (person, since_last_paid, threshold)
            continue
        assert since_last_paid <= threshold - MARGIN_DAYS, person
        if stage == "mature":
            assert len(days) >= 6 and n >= RULES.mature_min_orders + 1 and since_last_paid <= 20, person
        else:
            assert stage == "growing" and 2 <= n <= min(3, RULES.mature_min_orders - 1), person
    assert set(checked) == set(g.LIFECYCLES)


def test_the_lifecycle_rules_recover_every_planted_stage(truth, lifecycle_facts):
    """The warehouse's own classifier, fed what the data shows, gives back every planted stage."""
    people = sorted(truth["persons"])
    features = pd.DataFrame(
        {
            "user_key": people,
            "days_since_first_seen": [lifecycle_facts[p]["since_first_seen"] for p in people],
            "days_since_last_activity": [lifecycle_facts[p]["since_activity"] for p in people],
            "days_since_first_paid": [max(lifecycle_facts[p]["visible_days"], default=None) for p in people],
            "days_since_last_paid": [min(lifecycle_facts[p]["visible_days"], default=None) for p in people],
            "paid_orders": [len(lifecycle_facts[p]["visible_days"]) for p in people],
            "median_order_interval_days": [lifecycle_facts[p]["median_interval"] for p in people],
        }
    )
    predicted = classify_lifecycle(features, RULES)
    planted = [truth["persons"][p]["lifecycle_stage"] for p in people]
    wrong = [
        (p, s, got)
        for p, s, got in zip(people, planted, predicted["lifecycle_stage"], strict=True)
        if s != got
    ]
    assert wrong == []


def test_first_seen_is_the_first_event_of_the_person(truth, good_events):
    owner = {r["identifier_value"]: r["person_id"] for r in truth["identifiers"]}
    first = {}
    for _, _, e in good_events:
        person = _person_of(e, owner)
        if person:
            moment = _utc(e["timestamp"])
            if person not in first or moment < first[person][0]:
                first[person] = (moment, e["context"]["channel"])
    for person, r in truth["persons"].items():
        moment, channel = first[person]
        assert (
            r["first_seen_at"] == moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
        )
        assert r["first_channel"] == channel


def test_personas_behave_differently(truth, latest_orders, good_events):
    history = _paid_history(truth, latest_orders)
    persona_of = {p: r["persona"] for p, r in truth["persons"].items()}
    coupon, value = defaultdict(list), defaultdict(list)
    for person, orders in history.items():
        for o in orders:
            coupon[persona_of[person]].append(bool(o["coupon_code"]))
            value[persona_of[person]].append(float(o["paid_amount"]))
    assert np.mean(coupon["bargain_hunter"]) > 0.5 > 0.15 > np.mean(coupon["quality_seeker"])
    assert np.median(value["quality_seeker"]) > 2 * np.median(value["bargain_hunter"])
    owner = {r["identifier_value"]: r["person_id"] for r in truth["identifiers"]}
    hours, video = defaultdict(list), defaultdict(list)
    for _, _, e in good_events:
        persona = persona_of.get(_person_of(e, owner))
        hours[persona].append((_utc(e["timestamp"]) + SHANGHAI).hour)
        if e.get("event") == "Content Viewed":
            video[persona].append(e["properties"]["content_type"] == "video")
    night = lambda hs: np.mean([h >= 22 or h <= 2 for h in hs])  # noqa: E731
    assert night(hours["night_owl_viewer"]) > 2 * night(hours["loyal_regular"])
    assert np.mean(video["night_owl_viewer"]) > 2 * np.mean(video["casual_browser"])
    shares = Counter(
        persona_of.get(_person_of(e, owner))
        for _, _, e in good_events
        if e.get("event") in ("Product Shared", "Content Shared")
    )
    per_person = {p: shares[p] / sum(v == p for v in persona_of.values()) for p in shares if p}
    assert max(per_person, key=per_person.get) == "community_sharer"


# --- small helpers --------------------------------------------------------------------------------


def test_money_formats_exact_cents():
    assert [g.money(c) for c in (0, 5, 1999, 100000, -250)] == ["0.00", "0.05", "19.99", "1000.00", "-2.50"]


def test_clock_formats_the_three_timestamp_shapes():
    clock = g._Clock(g.Calendar(date(2026, 3, 1), 400))
    local = (18 * 3600 + 23 * 60 + 45) * 1000 + 123  # 2026-03-01 18:23:45.123 in Shanghai
    assert clock.utc_iso(local) == "2026-03-01T10:23:45.123Z"
    assert clock.local_offset(local) == "2026-03-01T18:23:45+08:00"
    assert clock.local_naive(local) == "2026-03-01 18:23:45"
    assert clock.utc_iso(3_600_000) == "2026-02-28T17:00:00.000Z"  # 01:00 local is the previous UTC day


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), last_day=st.integers(364, 700))
def test_lifecycle_anchors_stay_inside_their_bands(seed, last_day):
    rng = np.random.default_rng(seed)
    persona = rng.integers(0, len(g.PERSONAS), size=3000)
    plan = g.plan_lifecycles(rng, persona, last_day)
    stage, first, last, n = plan["lifecycle"], plan["first_paid"], plan["last_paid"], plan["n_paid"]
    active, seen = plan["last_active"], plan["first_seen"]
    assert (active >= 1).all() and (seen <= last_day).all() and (seen >= active).all()
    paid = stage != g.PROSPECT
    assert (n[~paid] == 0).all() and (seen[paid] >= first[paid]).all() and (active[paid] <= last[paid]).all()
    assert ((last[stage == g.NEW] >= 3) & (last[stage == g.NEW] <= 20)).all()
    growing = stage == g.GROWING
    assert ((first[growing] >= 60) & (first[growing] <= 150) & (last[growing] <= 30)).all()
    assert ((n[stage == g.MATURE] >= 6) & (last[stage == g.MATURE] <= 20)).all()
    declining = stage == g.DECLINING
    assert ((n[declining] >= 5) & (last[declining] >= 90) & (last[declining] <= 150)).all()
    assert (active[stage == g.CHURNED] >= 200).all() and (first <= last_day - 35).all()
    prospect, clear = stage == g.PROSPECT, plan["clear"]
    assert (active[prospect] <= 172).all() and (active[prospect & clear] <= 150).all()
    # even a maximally jittered rhythm lapses at least 20 days before the last paid order
    lapse = np.maximum(60, 3 * (plan["interval"][declining] + g.ORDER_DAY_JITTER))
    assert (last[declining] - lapse >= g.LAPSE_MARGIN_DAYS).all()
    assert (plan["interval"][declining] >= 15).all()


def test_worker_processes_produce_the_same_chunks_as_a_serial_run():
    world, plan, _, _ = g.build_world(240, 5, date(2025, 1, 1), END)
    tasks = g.make_tasks(plan, [11, 12, 13], chunk_people=80)
    serial = list(g._run_chunks(world, tasks, progress=False, parallel=False))
    parallel = list(g._run_chunks(world, tasks, progress=False, parallel=True))
    assert [r.index for r in parallel] == [0, 1, 2]
    assert [(r.event_days, r.orders, r.persons) for r in parallel] == [
        (r.event_days, r.orders, r.persons) for r in serial
    ]
    assert sum(len(r.persons) for r in serial) == 240
