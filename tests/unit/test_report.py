"""The report's pure functions on small hand-made frames: exact takeaways, real images, a standalone page."""

import json
import re
from datetime import date

import dagster as dg
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestration import report as rp

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
AS_OF = date(2026, 6, 30)


def png_size(png: bytes) -> tuple[int, int]:
    """Width and height from the IHDR chunk: a real, non-empty image has both above zero."""
    assert png.startswith(PNG_SIGNATURE), "not a PNG"
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")


def profile_frame() -> pd.DataFrame:
    rows = [
        # segment, r, f, monetary, frequency, stage, expected_value, p_alive, province
        ("Champions", 5, 5, 1000.0, 6, "mature", 900.0, 0.95, "广东省"),
        ("Champions", 5, 5, 800.0, 5, "mature", 700.0, 0.90, "广东省"),
        ("Loyal", 4, 4, 500.0, 4, "growing", 400.0, 0.80, "浙江省"),
        ("At Risk", 2, 4, 600.0, 4, "declining", 100.0, 0.30, "上海市"),
        ("Hibernating", 1, 1, 50.0, 1, "churned", 10.0, 0.10, "北京市"),
        ("Hibernating", 1, 1, 40.0, 1, "churned", 0.0, 0.05, None),
        ("New Customers", 5, 1, 100.0, 1, "new", 200.0, 0.99, "广东省"),
        ("Non-buyer", None, None, 0.0, 0, "prospect", None, None, "广东省"),
        ("Non-buyer", None, None, 0.0, 0, "prospect", None, None, "江苏省"),
        (None, None, None, 300.0, 2, None, None, None, "江苏省"),
    ]
    columns = [
        "rfm_segment", "r_score", "f_score", "monetary", "frequency", "lifecycle_stage",
        "expected_value", "p_alive", "province",
    ]  # fmt: skip
    frame = pd.DataFrame(rows, columns=columns)
    frame["r_score"] = frame["r_score"].astype("Int64")
    frame["f_score"] = frame["f_score"].astype("Int64")
    frame["frequency"] = frame["frequency"].astype("Int64")
    frame["rfm_segment"] = frame["rfm_segment"].astype("string")
    frame["user_key"] = [f"hx_{i}" for i in range(len(frame))]
    return frame


def personas_frame() -> pd.DataFrame:
    features_a = [
        {
            "feature": "avg_order_value",
            "effect_size": 1.2,
            "ratio": 1.6,
            "cluster_mean": 1,
            "population_mean": 1,
        },
        {
            "feature": "discount_share",
            "effect_size": -1.5,
            "ratio": 0.2,
            "cluster_mean": 1,
            "population_mean": 1,
        },
        {"feature": "share_video", "effect_size": 0.1, "ratio": 1.0, "cluster_mean": 1, "population_mean": 1},
        {
            "feature": "share_morning",
            "effect_size": 0.05,
            "ratio": 1.0,
            "cluster_mean": 1,
            "population_mean": 1,
        },
    ]
    features_b = [
        {"feature": "group_messages_per_active_day", "effect_size": 4.2, "ratio": 7.5, "cluster_mean": 1,
         "population_mean": 1},
    ]  # fmt: skip
    return pd.DataFrame(
        {
            "cluster_id": ["0", "1"],
            "name_zh": ["高客单<回头客>&", "群聊活跃分享达人"],
            "name_en": ["big-ticket repeat buyers", "group-chatting sharers"],
            "size": [30, 70],
            "share": [0.3, 0.7],
            "description_zh": ["高客单回头客：共30人。", "群聊活跃：共70人。"],
            "top_features": [json.dumps(features_a), json.dumps(features_b)],
        }
    )


def transitions_frame() -> pd.DataFrame:
    rows = [
        ("2026-06-29", "2026-06-30", "mature", "mature", 6),
        ("2026-06-29", "2026-06-30", "mature", "declining", 3),
        ("2026-06-29", "2026-06-30", "new", "growing", 1),
        ("2026-06-28", "2026-06-29", "new", "churned", 50),  # an older pair of runs: not the latest
    ]
    frame = pd.DataFrame(rows, columns=["from_date", "to_date", "from_stage", "to_stage", "users"])
    frame["from_date"] = pd.to_datetime(frame["from_date"])
    frame["to_date"] = pd.to_datetime(frame["to_date"])
    return frame


def retention_frame() -> pd.DataFrame:
    rows = [
        # grain, cohort, period, complete, size, retained
        ("week", "2026-06-01", 0, True, 10, 10),
        ("week", "2026-06-01", 1, True, 10, 6),
        ("week", "2026-06-01", 4, True, 10, 2),
        ("week", "2026-06-08", 0, True, 30, 30),
        ("week", "2026-06-08", 1, True, 30, 12),
        ("week", "2026-06-08", 4, False, 30, 1),  # incomplete week: must not count
        ("month", "2026-06-01", 1, True, 40, 40),
    ]
    frame = pd.DataFrame(
        rows, columns=["grain", "cohort", "period", "is_period_complete", "cohort_size", "retained_users"]
    )
    frame["cohort"] = pd.to_datetime(frame["cohort"])
    frame["retention_rate"] = frame["retained_users"] / frame["cohort_size"]
    return frame


def funnel_frame() -> pd.DataFrame:
    steps = ["Product Viewed", "Product Added", "Checkout Started", "Order Completed"]
    users = {"all": [100, 60, 50, 40], "app": [50, 40, 35, 30], "web": [50, 20, 15, 10]}
    rows = []
    for channel, counts in users.items():
        for number, (step, count) in enumerate(zip(steps, counts, strict=True), start=1):
            rows.append((channel, number, step, count, count / counts[max(number - 2, 0)], count / counts[0]))
    columns = [
        "channel",
        "step_number",
        "step_name",
        "users",
        "conversion_from_previous",
        "conversion_from_first",
    ]
    return pd.DataFrame(rows[::-1], columns=columns)


def heatmap_frame() -> pd.DataFrame:
    rows = [(weekday, hour, 0, 0) for weekday in range(7) for hour in range(24)]
    frame = pd.DataFrame(rows, columns=["weekday", "hour_of_day", "events", "users"])
    frame.loc[(frame["weekday"] == 1) & (frame["hour_of_day"] == 21), "events"] = 60
    frame.loc[(frame["weekday"] == 4) & (frame["hour_of_day"] == 9), "events"] = 40
    return frame


def geo_frame() -> pd.DataFrame:
    rows = [
        ("广东省", "深圳市", 40, 30, 50, 5000.0),
        ("广东省", "广州市", 20, 10, 20, 1000.0),
        ("浙江省", "杭州市", 30, 20, 30, 3000.0),
        ("新疆维吾尔自治区", "乌鲁木齐市", 5, 1, 1, 1000.0),
        (None, None, 50, 1, 1, 0.0),
    ]
    return pd.DataFrame(rows, columns=["province", "city", "users", "buyers", "paid_orders", "paid_revenue"])


def active_users_frame() -> pd.DataFrame:
    dates = pd.date_range("2026-05-01", "2026-06-30", freq="D")
    frame = pd.DataFrame({"activity_date": dates, "dau": 10, "wau": 40, "mau": 100})
    frame.loc[frame["activity_date"] < "2026-06-01", "dau"] = 90  # outside the 30-day window
    frame["stickiness"] = frame["dau"] / frame["mau"]
    return frame


def rules_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "level": ["category", "category", "product"],
            "antecedent": ["家居日用", "母婴用品 + 食品饮料", "P1"],
            "consequent": ["食品饮料", "家居日用", "P2"],
            "support": [0.09, 0.02, 0.01],
            "confidence": [0.35, 0.28, 0.5],
            "lift": [1.09, 1.13, 1.05],
        }
    )


def catalogue_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "tag": ["repeat_buyer", "bought_category:食品饮料", "champion", "frequent_refunder"],
            "label_zh": ["复购客户", "购买过「食品饮料」", "冠军客户", "高退款"],
            "label_en": ["Repeat buyer", "Bought 食品饮料", "Champion", "Frequent refunder"],
            "members": [6, 8, 2, 0],
        }
    )


def marts() -> dict[str, pd.DataFrame]:
    return {
        "user_profile": profile_frame(),
        "personas": personas_frame(),
        "lifecycle_transitions": transitions_frame(),
        "kpi_retention": retention_frame(),
        "kpi_funnel": funnel_frame(),
        "kpi_activity_heatmap": heatmap_frame(),
        "kpi_geo": geo_frame(),
        "kpi_active_users": active_users_frame(),
        "association_rules": rules_frame(),
        "tag_catalogue": catalogue_frame(),
    }


def empty_marts() -> dict[str, pd.DataFrame]:
    """A business on its first day: the tables exist (same columns) but hold no rows."""
    return {name: frame.iloc[0:0] for name, frame in marts().items()}


@pytest.fixture(scope="module")
def built() -> rp.Report:
    return rp.build_report(marts(), AS_OF)


# ---------------------------------------------------------------- frames and takeaways


def test_headline_kpis_count_people_buyers_revenue_and_average_dau_mau_over_30_days():
    kpis = rp.headline_kpis(profile_frame(), active_users_frame(), AS_OF)
    assert kpis == {"people": 10.0, "buyers": 8.0, "revenue": 3390.0, "dau_mau": pytest.approx(0.10)}


def test_segment_sizes_count_unprofiled_people_and_takeaway_shares_champions_and_loyal():
    segments = rp.segment_sizes(profile_frame())
    assert segments.set_index("segment")["people"].to_dict() == {
        "Champions": 2, "Hibernating": 2, "Non-buyer": 2, "At Risk": 1, "Loyal": 1, "New Customers": 1,
        "Not profiled": 1,
    }  # fmt: skip
    assert segments["share"].sum() == pytest.approx(1.0)
    # 7 buyers in named segments, 3 of them Champions or Loyal; ties broken by name.
    assert rp.segment_takeaway(segments) == (
        "43% of buyers are Champions or Loyal; the largest buyer segment is Champions (2 people)."
    )


def test_persona_takeaways_name_largest_smallest_and_sharpest_contrast():
    sizes = rp.persona_sizes(personas_frame())
    assert list(sizes["name_en"]) == ["group-chatting sharers", "big-ticket repeat buyers"]
    assert rp.persona_takeaway(sizes) == (
        "The largest persona is group-chatting sharers (70% of clustered people); "
        "the smallest is big-ticket repeat buyers (30%)."
    )
    features = rp.persona_top_features(personas_frame(), per_persona=3)
    first = features[features["cluster_id"] == "0"]
    assert list(first["feature"]) == ["discount_share", "avg_order_value", "share_video"]
    assert rp.persona_features_takeaway(features) == (
        "Sharpest contrast: group-chatting sharers show 7.5× the average group messages per active day."
    )


def test_lifecycle_counts_keep_funnel_order_and_takeaway_adds_stages():
    stages = rp.lifecycle_counts(profile_frame())
    assert list(stages["stage"]) == list(rp.LIFECYCLE_STAGES)
    assert list(stages["people"]) == [2, 1, 1, 2, 1, 2]
    assert rp.lifecycle_takeaway(stages) == "33% of people are declining or churned; 22% are new or growing."


def test_transitions_use_only_the_latest_pair_of_runs():
    matrix = rp.latest_transitions(transitions_frame())
    assert matrix.loc["mature", "declining"] == 3
    assert matrix.loc["new", "churned"] == 0
    assert int(matrix.to_numpy().sum()) == 10
    assert rp.transitions_takeaway(matrix) == (
        "Since 2026-06-29, the most common move is mature → declining (3 people); 60% kept their stage."
    )
    empty = rp.latest_transitions(transitions_frame().iloc[0:0])
    assert rp.transitions_takeaway(empty).startswith("No stage changes yet")


def test_rfm_grid_has_all_25_cells_with_counts_and_average_spend():
    grid = rp.rfm_grid(profile_frame())
    assert len(grid) == 25 and int(grid["buyers"].sum()) == 7
    cell = grid[(grid["r_score"] == 5) & (grid["f_score"] == 5)].iloc[0]
    assert cell["buyers"] == 2 and cell["avg_monetary"] == pytest.approx(900.0)
    # Busiest cell ties (R5F5 and R1F1 both 2): the first in R5-to-R1 order wins; R>=4 & F>=4 holds 3 of 7.
    assert rp.rfm_takeaway(grid) == (
        "The busiest cell is R5·F5 with 2 buyers; 43% of buyers score 4+ on both recency and frequency."
    )


def test_weekly_retention_pools_complete_weeks_weighted_by_cohort_size():
    weekly = rp.weekly_retention(retention_frame())
    assert set(weekly["cohort"].dt.strftime("%Y-%m-%d")) == {"2026-06-01", "2026-06-08"}
    assert rp.pooled_retention(weekly, 1) == pytest.approx(18 / 40)
    assert rp.pooled_retention(weekly, 4) == pytest.approx(2 / 10)  # the incomplete week is left out
    assert rp.retention_takeaway(weekly) == (
        "Across the last 2 weekly cohorts, 45% came back in week 1 and 20% in week 4."
    )
    assert len(rp.weekly_retention(retention_frame(), cohorts=1)["cohort"].unique()) == 1


def test_funnel_takeaway_reports_overall_best_and_worst_channel():
    steps = rp.funnel_steps(funnel_frame())
    assert list(steps["channel"].head(4)) == ["all"] * 4
    assert list(steps["step_number"].head(4)) == [1, 2, 3, 4]
    assert rp.funnel_takeaway(steps) == (
        "40% of product viewers reach Order Completed; app converts best (60%), web worst (20%)."
    )


def test_activity_takeaway_finds_peak_weekday_hour_and_evening_share():
    grid = rp.activity_grid(heatmap_frame())
    assert grid.shape == (7, 24)
    assert rp.activity_takeaway(grid) == (
        "Activity peaks on Tuesday at 21:00 (60 events); 60% of events happen between 18:00 and midnight."
    )


def test_province_totals_sum_cities_label_in_pinyin_and_skip_unknown_as_leader():
    provinces = rp.province_totals(geo_frame())
    by_province = provinces.set_index("province")
    assert by_province.loc["广东省", "users"] == 60
    assert by_province.loc["广东省", "revenue"] == pytest.approx(6000.0)
    assert by_province.loc["新疆维吾尔自治区", "label"] == "Xinjiang"
    assert provinces.iloc[0]["label"] == "Guangdong"
    assert rp.geography_takeaway(provinces) == (
        "Guangdong leads with 60 people and 60% of revenue; the top 3 provinces hold 66% of people."
    )


@pytest.mark.parametrize(
    ("name", "label"),
    [("广东省", "Guangdong"), ("上海市", "Shanghai"), ("广西壮族自治区", "Guangxi"),
     ("内蒙古", "Inner Mongolia"), ("香港特别行政区", "Hong Kong"), ("Guangdong", "Guangdong"),
     (None, "unknown"), ("  ", "unknown")],
)  # fmt: skip
def test_province_label(name, label):
    assert rp.province_label(name) == label


def test_clv_takeaway_median_top_decile_share_and_fading_buyers():
    values = rp.clv_values(profile_frame())
    assert len(values) == 7
    # Sorted values 900, 700, 400, 200, 100, 10, 0: median 200, top 1 buyer (ceil 10% of 7) holds 900/2310.
    assert rp.clv_takeaway(values) == (
        "Median expected value is ¥200; the top 10% of buyers hold 39% of it, and 43% have p_alive below 0.5."
    )


def test_rules_ranked_by_lift_and_tags_by_members():
    rules = rp.top_rules(rules_frame())
    assert list(rules["lift"]) == [1.13, 1.09, 1.05]
    assert (
        rp.rules_takeaway(rules)
        == "Strongest rule: 母婴用品 + 食品饮料 → 家居日用 (lift 1.13, confidence 28%)."
    )
    tags = rp.top_tags(catalogue_frame())
    assert list(tags["tag"]) == ["bought_category:食品饮料", "repeat_buyer", "champion"]
    assert rp.tags_takeaway(tags, people=10) == (
        "The most common tag is Bought 食品饮料 (购买过「食品饮料」): 8 people, 80% of everyone."
    )


@pytest.mark.parametrize(
    ("value", "text"),
    [(0, "¥0"), (1234.4, "¥1,234"), (56_789, "¥57k"), (2_500_000, "¥2.5M"), (3.2e9, "¥3.2B")],
)
def test_yuan(value, text):
    assert rp.yuan(value) == text


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from([*rp.LIFECYCLE_STAGES, None]), min_size=1, max_size=60))
def test_lifecycle_counts_account_for_every_staged_person(stages):
    profile = pd.DataFrame({"lifecycle_stage": pd.Series(stages, dtype="string")})
    counts = rp.lifecycle_counts(profile)
    assert int(counts["people"].sum()) == sum(stage is not None for stage in stages)
    assert list(counts["stage"]) == list(rp.LIFECYCLE_STAGES)


# ---------------------------------------------------------------- charts


CHARTS = {
    "segments": lambda m: rp.segment_chart(rp.segment_sizes(m["user_profile"])),
    "persona sizes": lambda m: rp.persona_size_chart(rp.persona_sizes(m["personas"])),
    "persona features": lambda m: rp.persona_features_chart(rp.persona_top_features(m["personas"])),
    "lifecycle": lambda m: rp.lifecycle_chart(rp.lifecycle_counts(m["user_profile"])),
    "transitions": lambda m: rp.transitions_chart(rp.latest_transitions(m["lifecycle_transitions"])),
    "rfm": lambda m: rp.rfm_chart(rp.rfm_grid(m["user_profile"])),
    "retention": lambda m: rp.retention_chart(rp.weekly_retention(m["kpi_retention"])),
    "funnel": lambda m: rp.funnel_chart(rp.funnel_steps(m["kpi_funnel"])),
    "activity": lambda m: rp.activity_chart(rp.activity_grid(m["kpi_activity_heatmap"])),
    "geography": lambda m: rp.geography_chart(rp.province_totals(m["kpi_geo"])),
    "clv": lambda m: rp.clv_chart(rp.clv_values(m["user_profile"])),
    "tags": lambda m: rp.tags_chart(rp.top_tags(m["tag_catalogue"]), len(m["user_profile"])),
}


@pytest.mark.parametrize("name", CHARTS)
def test_every_chart_is_a_png_with_data_larger_than_its_empty_state(name):
    width, height = png_size(CHARTS[name](marts()))
    empty_width, empty_height = png_size(CHARTS[name](empty_marts()))
    assert width > 300 and height > 150
    assert empty_width > 0 and empty_height > 0
    assert height > empty_height, "the data chart should be taller than the one-line placeholder"


def test_charts_draw_without_missing_glyph_warnings(recwarn):
    for draw in CHARTS.values():
        draw(marts())
    glyph_warnings = [w for w in recwarn if "missing from font" in str(w.message)]
    assert not glyph_warnings, "Chinese text reached a chart; it belongs in the HTML tables"


# ---------------------------------------------------------------- HTML


def test_html_has_every_section_an_image_per_chart_and_the_headline(built):
    page = built.html
    for section in built.sections:
        assert f'<section id="{section.key}">' in page
        assert rp.html.escape(section.takeaway) in page
    keys = [section.key for section in built.sections]
    assert keys == [
        "segments", "personas", "persona-profiles", "lifecycle", "transitions", "rfm", "retention", "funnel",
        "activity", "geography", "clv", "rules", "tags",
    ]  # fmt: skip
    assert page.count('<img src="data:image/png;base64,') == 12
    assert "As of <time" in page and "2026-06-30" in page
    for label in ("people", "buyers", "paid revenue", "DAU / MAU"):
        assert f'<div class="label">{label}' in page
    assert '<div class="value">¥3,390</div>' in page and '<div class="value">10%</div>' in page


def test_html_is_self_contained(built):
    page = built.html
    assert "http://" not in page and "https://" not in page
    assert not re.search(r"<(script|link|iframe)\b", page)
    assert not re.search(r'src="(?!data:image/png;base64,)', page)
    assert not re.search(r"url\(", page)


def test_chinese_text_is_kept_readable_and_markup_in_it_is_escaped(built):
    page = built.html
    assert "高客单&lt;回头客&gt;&amp;" in page  # a persona name carrying markup characters
    assert "高客单<回头客>" not in page
    assert "群聊活跃分享达人" in page and "母婴用品 + 食品饮料" in page and "广东省" in page
    assert '<meta charset="utf-8">' in page


def test_empty_marts_still_render_every_section_with_its_empty_state():
    page = rp.build_report(empty_marts(), AS_OF)
    assert [s.takeaway for s in page.sections if s.key == "segments"] == [
        "No buyers yet: every profiled person is a non-buyer."
    ]
    assert page.html.count('<img src="data:image/png;base64,') == 12
    assert page.kpis == {"people": 0.0, "buyers": 0.0, "revenue": 0.0, "dau_mau": 0.0}


def test_metadata_has_markdown_tables_and_embedded_chart_images(built, tmp_path):
    metadata = rp.report_metadata(built, tmp_path / "report.html")
    assert metadata["people"].value == 10 and metadata["buyers"].value == 8
    assert metadata["takeaways"].value.startswith("| section | takeaway |\n|---|---|\n| RFM segments |")
    assert "| paid revenue | ¥3,390 |" in metadata["headline"].value
    for key in rp.METADATA_IMAGES:
        assert "](data:image/png;base64," in metadata[f"chart_{key}"].value


def test_write_report_replaces_the_file_in_one_step(tmp_path):
    target = tmp_path / "warehouse" / "report.html"
    rp.write_report("<p>old</p>", target)
    rp.write_report("<p>画像</p>", target)
    assert target.read_text(encoding="utf-8") == "<p>画像</p>"
    assert [p.name for p in target.parent.iterdir()] == ["report.html"]


def test_report_asset_is_a_serving_asset_downstream_of_every_mart_it_charts():
    key = dg.AssetKey(["report"])
    assert rp.report.key == key
    assert rp.report.group_names_by_key[key] == "serving"
    assert rp.report.asset_deps[key] == {dg.AssetKey(["marts", name]) for name in rp.REPORT_MARTS}


def test_persona_features_without_an_effect_size_are_left_out():
    """An orders-only business has no content or time-of-day spread: those features carry no effect size."""
    import json as json_module

    import pandas as pd

    from orchestration.report import persona_top_features

    personas = pd.DataFrame(
        {
            "cluster_id": ["0"],
            "name_zh": ["高客单"],
            "name_en": ["big spenders"],
            "size": [10],
            "share": [1.0],
            "description_zh": ["d"],
            "top_features": [
                json_module.dumps(
                    [
                        {"feature": "share_video", "effect_size": None, "ratio": None},
                        {"feature": "avg_order_value", "effect_size": 1.5, "ratio": None},
                    ]
                )
            ],
        }
    )
    features = persona_top_features(personas)
    assert features["feature"].tolist() == ["avg_order_value"]
    assert features["effect_size"].tolist() == [1.5]
    assert features["ratio"].isna().all()
