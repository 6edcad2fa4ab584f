"""The static HTML report: marts in, charts and one-line takeaways out, readable offline in any browser.

Charts are PNGs drawn with matplotlib (Agg, no pyplot state) and inlined as base64, so the file needs no
network and no fonts beyond matplotlib's own DejaVu Sans. That font has no Chinese glyphs, so chart labels
are English or pinyin and every Chinese name (personas, provinces, categories, tags) is shown as HTML text
beside the chart, where the reader's browser picks a CJK font.
"""

import base64
import functools
import html
import io
import json
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import dagster as dg
import matplotlib
import numpy as np
import pandas as pd
from matplotlib import ticker
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from orchestration.resources import HuaxiangResource

REPORT_MARTS = (
    "user_profile",
    "personas",
    "lifecycle_transitions",
    "kpi_retention",
    "kpi_funnel",
    "kpi_activity_heatmap",
    "kpi_geo",
    "kpi_active_users",
    "association_rules",
    "tag_catalogue",
)
PROFILE_COLUMNS = (
    "user_key, province, frequency, monetary, r_score, f_score, rfm_segment, value_tier, lifecycle_stage, "
    "cluster_id, persona, p_alive, expected_value"
)

LIFECYCLE_STAGES = ("prospect", "new", "growing", "mature", "declining", "churned")
NON_BUYER = "Non-buyer"
NOT_PROFILED = "Not profiled"
UNKNOWN = "unknown"
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
WEEKDAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")

# One palette for every chart: the same stage or channel is the same colour wherever it appears.
ACCENT = "#2F6690"
CONTRAST = "#C8553D"
MUTED = "#B8C4CC"
STAGE_COLOURS = {
    "prospect": "#B8C4CC",
    "new": "#81C3D7",
    "growing": "#3A7CA5",
    "mature": "#16425B",
    "declining": "#F2A65A",
    "churned": "#C8553D",
}
CHANNEL_COLOURS = {
    "all": "#16425B",
    "miniprogram": "#2A9D8F",
    "official_account": "#E9C46A",
    "app": "#F4A261",
    "web": "#8E7DBE",
    "offline_store": "#8AB17D",
    "other": "#B8C4CC",
}
HEATMAP_COLOURS = "Blues"
DPI = 110
CHART_STYLE = {
    "font.family": "DejaVu Sans",
    "font.size": 10,
    "axes.titlesize": 12,
    "axes.titleweight": "bold",
    "axes.titlelocation": "left",
    "axes.labelsize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.edgecolor": "#666666",
    "axes.labelcolor": "#333333",
    "xtick.color": "#333333",
    "ytick.color": "#333333",
    "figure.facecolor": "white",
    "savefig.facecolor": "white",
}

PROVINCE_PINYIN = {
    "北京": "Beijing", "天津": "Tianjin", "上海": "Shanghai", "重庆": "Chongqing", "河北": "Hebei",
    "山西": "Shanxi", "辽宁": "Liaoning", "吉林": "Jilin", "黑龙江": "Heilongjiang", "江苏": "Jiangsu",
    "浙江": "Zhejiang", "安徽": "Anhui", "福建": "Fujian", "江西": "Jiangxi", "山东": "Shandong",
    "河南": "Henan", "湖北": "Hubei", "湖南": "Hunan", "广东": "Guangdong", "海南": "Hainan",
    "四川": "Sichuan", "贵州": "Guizhou", "云南": "Yunnan", "陕西": "Shaanxi", "甘肃": "Gansu",
    "青海": "Qinghai", "台湾": "Taiwan", "内蒙古": "Inner Mongolia", "广西": "Guangxi", "西藏": "Tibet",
    "宁夏": "Ningxia", "新疆": "Xinjiang", "香港": "Hong Kong", "澳门": "Macau",
}  # fmt: skip
PROVINCE_SUFFIXES = ("壮族自治区", "回族自治区", "维吾尔自治区", "特别行政区", "自治区", "省", "市")


@dataclass(frozen=True)
class Chart:
    alt: str
    png: bytes


@dataclass(frozen=True)
class Section:
    key: str
    title: str
    takeaway: str
    charts: tuple[Chart, ...] = ()
    table_html: str = ""


@dataclass(frozen=True)
class Report:
    html: str
    kpis: dict[str, float]
    sections: tuple[Section, ...]


def percent(value: float) -> str:
    """Whole percentages: takeaways are read at a glance, not audited."""
    return f"{value:.0%}"


def yuan(value: float) -> str:
    """Short money labels keep axes and takeaways readable at any business size."""
    magnitude = abs(value)
    if magnitude >= 1e9:
        return f"¥{value / 1e9:.1f}B"
    if magnitude >= 1e6:
        return f"¥{value / 1e6:.1f}M"
    if magnitude >= 1e4:
        return f"¥{value / 1e3:.0f}k"
    return f"¥{value:,.0f}"


def feature_label(feature: str) -> str:
    """Column names as words, for axis labels and takeaways."""
    return feature.replace("_", " ")


def province_label(province: str | None) -> str:
    """Pinyin for the chart axis (the chart font has no Chinese glyphs); the HTML table keeps the original."""
    if province is None or pd.isna(province) or not str(province).strip():
        return UNKNOWN
    name = str(province).strip()
    base = name
    for suffix in PROVINCE_SUFFIXES:
        if base.endswith(suffix) and len(base) > len(suffix):
            base = base[: -len(suffix)]
            break
    return PROVINCE_PINYIN.get(base, name)


def headline_kpis(profile: pd.DataFrame, active_users: pd.DataFrame, as_of: date) -> dict[str, float]:
    """The numbers a reader checks first; DAU/MAU is a 30-day average so one quiet day cannot skew it."""
    frequency = pd.to_numeric(profile["frequency"], errors="coerce").fillna(0)
    window_start = pd.Timestamp(as_of) - pd.Timedelta(days=29)
    dates = pd.to_datetime(active_users["activity_date"])
    recent = active_users[(dates >= window_start) & (dates <= pd.Timestamp(as_of))]
    ratios = (recent["dau"] / recent["mau"].where(recent["mau"] > 0)).dropna()
    return {
        "people": float(len(profile)),
        "buyers": float((frequency > 0).sum()),
        "revenue": float(pd.to_numeric(profile["monetary"], errors="coerce").fillna(0).sum()),
        "dau_mau": float(ratios.mean()) if len(ratios) else 0.0,
    }


def segment_sizes(profile: pd.DataFrame) -> pd.DataFrame:
    """People per RFM segment; people without profiling consent are counted, not hidden."""
    segments = profile["rfm_segment"].astype("string").fillna(NOT_PROFILED)
    frame = segments.value_counts().rename_axis("segment").reset_index(name="people")
    frame["segment"] = frame["segment"].astype(str)
    frame["share"] = frame["people"] / max(int(frame["people"].sum()), 1)
    return frame.sort_values(["people", "segment"], ascending=[False, True], ignore_index=True)


def persona_sizes(personas: pd.DataFrame) -> pd.DataFrame:
    """Personas from largest to smallest, with both names so charts and tables can pick a script."""
    columns = ["cluster_id", "name_zh", "name_en", "size", "share", "description_zh"]
    frame = personas.reindex(columns=columns).copy()
    frame["size"] = pd.to_numeric(frame["size"]).astype("int64")
    return frame.sort_values(["size", "cluster_id"], ascending=[False, True], ignore_index=True)


def persona_top_features(personas: pd.DataFrame, per_persona: int = 3) -> pd.DataFrame:
    """The strongest distinguishing features of each persona (by absolute effect size), one row each."""
    rows = []
    for persona in persona_sizes(personas).itertuples():
        source = personas.loc[personas["cluster_id"] == persona.cluster_id, "top_features"].iloc[0]
        features = json.loads(source) if isinstance(source, str) else list(source or [])
        # A feature with no spread (e.g. no content at all in an orders-only business) has no effect size.
        measured = [item for item in features if item.get("effect_size") is not None]
        ranked = sorted(measured, key=lambda item: -abs(float(item["effect_size"])))[:per_persona]
        for item in ranked:
            rows.append(
                {
                    "cluster_id": persona.cluster_id,
                    "persona": persona.name_en,
                    "feature": item["feature"],
                    "effect_size": float(item["effect_size"]),
                    "ratio": float("nan") if item.get("ratio") is None else float(item["ratio"]),
                }
            )
    columns = ["cluster_id", "persona", "feature", "effect_size", "ratio"]
    return pd.DataFrame(rows, columns=columns)


def lifecycle_counts(profile: pd.DataFrame) -> pd.DataFrame:
    """People per lifecycle stage in funnel order, zero for stages nobody is in."""
    counts = profile["lifecycle_stage"].dropna().astype(str).value_counts()
    frame = (
        counts.reindex(list(LIFECYCLE_STAGES), fill_value=0).rename_axis("stage").reset_index(name="people")
    )
    frame["people"] = frame["people"].astype("int64")
    frame["share"] = frame["people"] / max(int(frame["people"].sum()), 1)
    return frame


def latest_transitions(transitions: pd.DataFrame) -> pd.DataFrame:
    """Moves between the last two runs as a from-stage x to-stage matrix (empty before the second run)."""
    stages = list(LIFECYCLE_STAGES)
    if transitions.empty:
        return pd.DataFrame(index=pd.Index([], name="from_stage"), columns=stages, dtype="int64")
    latest = transitions[transitions["to_date"] == transitions["to_date"].max()]
    matrix = latest.pivot_table(
        index="from_stage", columns="to_stage", values="users", aggfunc="sum", fill_value=0
    )
    matrix = matrix.reindex(index=stages, columns=stages, fill_value=0).astype("int64")
    matrix.index.name, matrix.columns.name = "from_stage", "to_stage"
    matrix.attrs["from_date"] = latest["from_date"].iloc[0]
    return matrix


def rfm_grid(profile: pd.DataFrame) -> pd.DataFrame:
    """Buyers and average spend in every recency x frequency score cell (all 25 cells, zero when empty)."""
    scored = profile.dropna(subset=["r_score", "f_score"]).astype({"r_score": "int64", "f_score": "int64"})
    scored = scored.assign(monetary=pd.to_numeric(scored["monetary"], errors="coerce"))
    cells = scored.groupby(["r_score", "f_score"]).agg(
        buyers=("r_score", "size"), avg_monetary=("monetary", "mean")
    )
    full = pd.MultiIndex.from_product([range(5, 0, -1), range(1, 6)], names=["r_score", "f_score"])
    frame = cells.reindex(full).reset_index()
    frame["buyers"] = frame["buyers"].fillna(0).astype("int64")
    return frame


def weekly_retention(retention: pd.DataFrame, cohorts: int = 12, periods: int = 9) -> pd.DataFrame:
    """The latest weekly cohorts over their first weeks; incomplete weeks are left out, not shown as zero."""
    weekly = retention[(retention["grain"] == "week") & retention["is_period_complete"].astype(bool)]
    weekly = weekly[weekly["period"] < periods]
    latest = sorted(weekly["cohort"].unique())[-cohorts:]
    weekly = weekly[weekly["cohort"].isin(latest)]
    columns = ["cohort", "period", "cohort_size", "retained_users", "retention_rate"]
    return weekly[columns].sort_values(["cohort", "period"], ignore_index=True)


def funnel_steps(funnel: pd.DataFrame) -> pd.DataFrame:
    """Funnel rows in step order per channel, `all` first, so charts and takeaways read top to bottom."""
    frame = funnel.copy()
    frame["channel_order"] = (frame["channel"] != "all").astype(int)
    frame = frame.sort_values(["channel_order", "channel", "step_number"], ignore_index=True)
    return frame.drop(columns="channel_order")


def activity_grid(heatmap: pd.DataFrame) -> pd.DataFrame:
    """Events as a weekday (0 = Monday) x hour-of-day matrix with every cell present."""
    grid = heatmap.pivot_table(index="weekday", columns="hour_of_day", values="events", aggfunc="sum")
    return grid.reindex(index=range(7), columns=range(24), fill_value=0).fillna(0).astype("int64")


def province_totals(geo: pd.DataFrame) -> pd.DataFrame:
    """People, buyers and paid revenue per province (the mart is per city), largest first."""
    frame = geo.assign(province=geo["province"].astype("string").fillna(UNKNOWN))
    totals = frame.groupby("province", as_index=False).agg(
        users=("users", "sum"), buyers=("buyers", "sum"), revenue=("paid_revenue", "sum")
    )
    totals["province"] = totals["province"].astype(str)
    totals["label"] = totals["province"].map(province_label)
    totals["revenue_share"] = totals["revenue"] / max(float(totals["revenue"].sum()), 1e-9)
    return totals.sort_values(
        ["users", "revenue", "province"], ascending=[False, False, True], ignore_index=True
    )


def clv_values(profile: pd.DataFrame) -> pd.DataFrame:
    """Scored buyers' expected value and probability of being alive."""
    frame = profile[["expected_value", "p_alive"]].apply(pd.to_numeric, errors="coerce")
    return frame.dropna(subset=["expected_value"]).reset_index(drop=True)


def top_rules(rules: pd.DataFrame, limit: int = 10) -> pd.DataFrame:
    """The rules most worth acting on: highest lift, then confidence."""
    columns = ["level", "antecedent", "consequent", "support", "confidence", "lift"]
    ranked = rules.sort_values(["lift", "confidence", "antecedent"], ascending=[False, False, True])
    return ranked.reindex(columns=columns).head(limit).reset_index(drop=True)


def top_tags(catalogue: pd.DataFrame, limit: int = 12) -> pd.DataFrame:
    """The most widely held tags; `bought_category:*` families are expanded upstream, so rank members."""
    columns = ["tag", "label_zh", "label_en", "members"]
    ranked = catalogue.reindex(columns=columns).sort_values(["members", "tag"], ascending=[False, True])
    return ranked[ranked["members"] > 0].head(limit).reset_index(drop=True)


def segment_takeaway(segments: pd.DataFrame) -> str:
    """Share of buyers in the two best segments, and the biggest buyer segment."""
    buyers = segments[~segments["segment"].isin([NON_BUYER, NOT_PROFILED])]
    total = int(buyers["people"].sum())
    if total == 0:
        return "No buyers yet: every profiled person is a non-buyer."
    loyal = int(buyers.loc[buyers["segment"].isin(["Champions", "Loyal"]), "people"].sum())
    top = buyers.iloc[0]
    return (
        f"{percent(loyal / total)} of buyers are Champions or Loyal; the largest buyer segment is "
        f"{top['segment']} ({int(top['people']):,} people)."
    )


def persona_takeaway(sizes: pd.DataFrame) -> str:
    """How uneven the personas are: largest against smallest."""
    if sizes.empty:
        return "No personas yet: too few profiled people to cluster."
    largest, smallest = sizes.iloc[0], sizes.iloc[-1]
    return (
        f"The largest persona is {largest['name_en']} ({percent(largest['share'])} of clustered people); "
        f"the smallest is {smallest['name_en']} ({percent(smallest['share'])})."
    )


def persona_features_takeaway(features: pd.DataFrame) -> str:
    """The single most distinctive trait across all personas."""
    if features.empty:
        return "No persona profiles yet."
    sharpest = features.loc[features["effect_size"].abs().idxmax()]
    return (
        f"Sharpest contrast: {sharpest['persona']} show {sharpest['ratio']:.1f}× the average "
        f"{feature_label(sharpest['feature'])}."
    )


def lifecycle_takeaway(stages: pd.DataFrame) -> str:
    """The balance between people slipping away and people arriving."""
    total = int(stages["people"].sum())
    if total == 0:
        return "No lifecycle stages yet."
    by_stage = stages.set_index("stage")["people"]
    at_risk = (by_stage["declining"] + by_stage["churned"]) / total
    rising = (by_stage["new"] + by_stage["growing"]) / total
    return f"{percent(at_risk)} of people are declining or churned; {percent(rising)} are new or growing."


def transitions_takeaway(matrix: pd.DataFrame) -> str:
    """The biggest stage change since the previous run and how stable stages are."""
    if matrix.empty or int(matrix.to_numpy().sum()) == 0:
        return (
            "No stage changes yet: the lifecycle history holds one as-of date; moves show after the next run."
        )
    moves = matrix.stack()
    changed = moves[[source != target for source, target in moves.index]]
    kept = int(np.trace(matrix.to_numpy())) / int(moves.sum())
    since = (
        pd.Timestamp(matrix.attrs["from_date"]).date().isoformat() if "from_date" in matrix.attrs else None
    )
    prefix = f"Since {since}, " if since else ""
    if changed.sum() == 0:
        return f"{prefix}everyone kept their stage."
    (source, target), people = changed.idxmax(), int(changed.max())
    return (
        f"{prefix}the most common move is {source} → {target} ({people:,} people); "
        f"{percent(kept)} kept their stage."
    )


def rfm_takeaway(grid: pd.DataFrame) -> str:
    """Where buyers concentrate, and how many are both recent and frequent."""
    total = int(grid["buyers"].sum())
    if total == 0:
        return "No scored buyers yet."
    busiest = grid.loc[grid["buyers"].idxmax()]
    top_right = int(grid.loc[(grid["r_score"] >= 4) & (grid["f_score"] >= 4), "buyers"].sum())
    return (
        f"The busiest cell is R{int(busiest['r_score'])}·F{int(busiest['f_score'])} with "
        f"{int(busiest['buyers']):,} buyers; {percent(top_right / total)} of buyers score 4+ on both "
        f"recency and frequency."
    )


def pooled_retention(weekly: pd.DataFrame, period: int) -> float | None:
    """Retention at one period pooled over cohorts (weighted by size); None when no cohort got there."""
    rows = weekly[weekly["period"] == period]
    size = int(rows["cohort_size"].sum())
    return int(rows["retained_users"].sum()) / size if size else None


def retention_takeaway(weekly: pd.DataFrame) -> str:
    """Week-1 and week-4 return rates pooled over the charted cohorts."""
    week_one = pooled_retention(weekly, 1)
    if week_one is None:
        return "No weekly cohort has a complete second week yet."
    cohorts = weekly["cohort"].nunique()
    text = f"Across the last {cohorts} weekly cohorts, {percent(week_one)} came back in week 1"
    week_four = pooled_retention(weekly, 4)
    return text + (f" and {percent(week_four)} in week 4." if week_four is not None else ".")


def funnel_takeaway(steps: pd.DataFrame) -> str:
    """End-to-end conversion overall and the spread between channels."""
    overall = steps[steps["channel"] == "all"]
    if overall.empty or int(overall["users"].iloc[0]) == 0:
        return "No product views yet, so no funnel."
    last_step = overall["step_number"].max()
    text = (
        f"{percent(overall['conversion_from_first'].iloc[-1])} of product viewers reach "
        f"{overall['step_name'].iloc[-1]}"
    )
    channels = steps[(steps["channel"] != "all") & (steps["step_number"] == last_step)]
    channels = channels.sort_values(["conversion_from_first", "channel"], ascending=[False, True])
    if len(channels) < 2:
        return text + "."
    best, worst = channels.iloc[0], channels.iloc[-1]
    return (
        f"{text}; {best['channel']} converts best ({percent(best['conversion_from_first'])}), "
        f"{worst['channel']} worst ({percent(worst['conversion_from_first'])})."
    )


def activity_takeaway(grid: pd.DataFrame) -> str:
    """The best hour to reach people, and how evening-heavy activity is."""
    total = int(grid.to_numpy().sum())
    if total == 0:
        return "No tracked activity yet."
    weekday, hour = grid.stack().idxmax()
    evening = int(grid.loc[:, 18:23].to_numpy().sum()) / total
    return (
        f"Activity peaks on {WEEKDAY_NAMES[weekday]} at {hour:02d}:00 "
        f"({int(grid.loc[weekday, hour]):,} events); "
        f"{percent(evening)} of events happen between 18:00 and midnight."
    )


def geography_takeaway(provinces: pd.DataFrame) -> str:
    """The leading known province and how concentrated people are."""
    known = provinces[provinces["label"] != UNKNOWN]
    total_users = int(provinces["users"].sum())
    if known.empty or total_users == 0:
        return "No people with a known province yet."
    leader = known.iloc[0]
    top_three = int(known["users"].head(3).sum()) / total_users
    return (
        f"{leader['label']} leads with {int(leader['users']):,} people and "
        f"{percent(leader['revenue_share'])} of revenue; the top 3 provinces hold {percent(top_three)} "
        "of people."
    )


def clv_takeaway(values: pd.DataFrame) -> str:
    """Typical value, how concentrated it is, and how many buyers are fading."""
    if values.empty:
        return "No buyers scored for lifetime value yet."
    ranked = values["expected_value"].sort_values(ascending=False)
    top_count = max(1, math.ceil(len(ranked) * 0.1))
    top_share = ranked.head(top_count).sum() / ranked.sum() if ranked.sum() > 0 else 0.0
    alive = values["p_alive"].dropna()
    fading = (alive < 0.5).mean() if len(alive) else 0.0
    return (
        f"Median expected value is {yuan(float(ranked.median()))}; the top 10% of buyers hold "
        f"{percent(top_share)} of it, and {percent(fading)} have p_alive below 0.5."
    )


def rules_takeaway(rules: pd.DataFrame) -> str:
    """The one cross-sell worth trying first."""
    if rules.empty:
        return "No rule passed the support, confidence and lift thresholds yet."
    best = rules.iloc[0]
    return (
        f"Strongest rule: {best['antecedent']} → {best['consequent']} "
        f"(lift {best['lift']:.2f}, confidence {percent(best['confidence'])})."
    )


def tags_takeaway(tags: pd.DataFrame, people: int) -> str:
    """The most widely held tag and its reach."""
    if tags.empty or people == 0:
        return "No tag has members yet."
    top = tags.iloc[0]
    return (
        f"The most common tag is {top['label_en']} ({top['label_zh']}): {int(top['members']):,} people, "
        f"{percent(int(top['members']) / people)} of everyone."
    )


def styled(draw: Callable[..., bytes]) -> Callable[..., bytes]:
    """Every chart draws under the same rc style, without touching global matplotlib state."""

    @functools.wraps(draw)
    def wrapper(*args, **kwargs) -> bytes:
        with matplotlib.rc_context(CHART_STYLE):
            return draw(*args, **kwargs)

    return wrapper


def new_figure(width: float, height: float, nrows: int = 1, ncols: int = 1) -> tuple[Figure, np.ndarray]:
    """A figure on its own Agg canvas: no pyplot, no global backend, safe inside a Dagster run."""
    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure, figure.subplots(nrows, ncols, squeeze=False)


def png_bytes(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


@styled
def placeholder_chart(title: str, message: str) -> bytes:
    """An empty state the reader can see, so a missing chart never looks like a broken page."""
    figure, axes = new_figure(8, 1.6)
    ax = axes[0, 0]
    ax.set_title(title)
    ax.text(0.5, 0.45, message, ha="center", va="center", color="#666666", transform=ax.transAxes)
    ax.set_axis_off()
    return png_bytes(figure)


def label_bars(ax, bars, labels: list[str]) -> None:
    """Values on the bars, so nobody has to read them off the axis."""
    ax.bar_label(bars, labels=labels, padding=3, fontsize=9, color="#333333")


@styled
def segment_chart(segments: pd.DataFrame) -> bytes:
    if segments.empty:
        return placeholder_chart("People per RFM segment", "No people yet")
    figure, axes = new_figure(8, 0.32 * len(segments) + 1.2)
    ax = axes[0, 0]
    colours = [MUTED if s in (NON_BUYER, NOT_PROFILED) else ACCENT for s in segments["segment"]]
    bars = ax.barh(segments["segment"], segments["people"], color=colours)
    label_bars(
        ax,
        bars,
        [f"{n:,} ({percent(s)})" for n, s in zip(segments["people"], segments["share"], strict=True)],
    )
    ax.invert_yaxis()
    ax.set_xlabel("people")
    ax.set_title("People per RFM segment")
    ax.margins(x=0.18)
    return png_bytes(figure)


@styled
def persona_size_chart(sizes: pd.DataFrame) -> bytes:
    if sizes.empty:
        return placeholder_chart("People per persona", "No personas yet")
    figure, axes = new_figure(8, 0.45 * len(sizes) + 1.2)
    ax = axes[0, 0]
    bars = ax.barh(sizes["name_en"], sizes["size"], color=ACCENT)
    label_bars(
        ax, bars, [f"{n:,} ({percent(s)})" for n, s in zip(sizes["size"], sizes["share"], strict=True)]
    )
    ax.invert_yaxis()
    ax.set_xlabel("people")
    ax.set_title("People per persona")
    ax.margins(x=0.18)
    return png_bytes(figure)


@styled
def persona_features_chart(features: pd.DataFrame) -> bytes:
    if features.empty:
        return placeholder_chart("What sets each persona apart", "No personas yet")
    personas = list(dict.fromkeys(features["persona"]))
    columns = 2 if len(personas) > 1 else 1
    rows = math.ceil(len(personas) / columns)
    figure, axes = new_figure(10, 1.9 * rows + 0.6, rows, columns)
    limit = max(1.0, float(features["effect_size"].abs().max()) * 1.15)
    for ax, persona in zip(list(axes.flat)[: len(personas)], personas, strict=True):
        rows_of = features[features["persona"] == persona]
        colours = [ACCENT if value >= 0 else CONTRAST for value in rows_of["effect_size"]]
        bars = ax.barh([feature_label(f) for f in rows_of["feature"]], rows_of["effect_size"], color=colours)
        label_bars(ax, bars, [f"{r:.1f}×" for r in rows_of["ratio"]])
        ax.axvline(0, color="#666666", linewidth=0.8)
        ax.set_xlim(-limit, limit)
        ax.invert_yaxis()
        ax.set_title(persona, fontsize=10)
    for ax in list(axes.flat)[len(personas) :]:
        ax.set_axis_off()
    figure.suptitle(
        "What sets each persona apart (effect size vs everyone; label = ratio to average)",
        fontweight="bold",
        x=0.01,
        ha="left",
    )
    return png_bytes(figure)


@styled
def lifecycle_chart(stages: pd.DataFrame) -> bytes:
    if int(stages["people"].sum()) == 0:
        return placeholder_chart("People per lifecycle stage", "No lifecycle stages yet")
    figure, axes = new_figure(8, 3.2)
    ax = axes[0, 0]
    bars = ax.barh(stages["stage"], stages["people"], color=[STAGE_COLOURS[s] for s in stages["stage"]])
    label_bars(
        ax, bars, [f"{n:,} ({percent(s)})" for n, s in zip(stages["people"], stages["share"], strict=True)]
    )
    ax.invert_yaxis()
    ax.set_xlabel("people")
    ax.set_title("People per lifecycle stage (prospect → churned)")
    ax.margins(x=0.18)
    return png_bytes(figure)


def annotated_heatmap(ax, matrix: np.ndarray, labels: list[list[str]]):
    """Cell labels switch to white on dark cells so every number stays legible."""
    image = ax.imshow(matrix, cmap=HEATMAP_COLOURS, aspect="auto")
    finite = matrix[np.isfinite(matrix)]
    threshold = (np.nanmax(finite) if finite.size else 0) * 0.6
    for (row, column), value in np.ndenumerate(matrix):
        if labels[row][column]:
            colour = "white" if np.isfinite(value) and value > threshold else "#222222"
            ax.text(column, row, labels[row][column], ha="center", va="center", fontsize=8, color=colour)
    ax.spines[:].set_visible(False)
    return image


@styled
def transitions_chart(matrix: pd.DataFrame) -> bytes:
    if matrix.empty or int(matrix.to_numpy().sum()) == 0:
        return placeholder_chart("Lifecycle moves since the previous run", "No stage changes yet")
    figure, axes = new_figure(7, 5)
    ax = axes[0, 0]
    values = matrix.to_numpy(dtype=float)
    annotated_heatmap(ax, values, [[f"{int(v):,}" if v else "" for v in row] for row in values])
    ax.set_xticks(range(len(matrix.columns)), matrix.columns, rotation=30, ha="right")
    ax.set_yticks(range(len(matrix.index)), matrix.index)
    ax.set_xlabel("stage now")
    ax.set_ylabel("stage at previous run")
    ax.set_title("Lifecycle moves since the previous run")
    return png_bytes(figure)


@styled
def rfm_chart(grid: pd.DataFrame) -> bytes:
    if int(grid["buyers"].sum()) == 0:
        return placeholder_chart("Buyers by recency and frequency score", "No scored buyers yet")
    buyers = grid.pivot(index="r_score", columns="f_score", values="buyers").sort_index(ascending=False)
    spend = grid.pivot(index="r_score", columns="f_score", values="avg_monetary").sort_index(ascending=False)
    labels = [
        [f"{int(n):,}\n{yuan(m)}" if n else "" for n, m in zip(count_row, spend_row, strict=True)]
        for count_row, spend_row in zip(buyers.to_numpy(), spend.to_numpy(), strict=True)
    ]
    figure, axes = new_figure(7, 5)
    ax = axes[0, 0]
    image = annotated_heatmap(ax, buyers.to_numpy(dtype=float), labels)
    figure.colorbar(image, ax=ax, label="buyers", shrink=0.8)
    ax.set_xticks(range(5), [f"F{f}" for f in buyers.columns])
    ax.set_yticks(range(5), [f"R{r}" for r in buyers.index])
    ax.set_xlabel("frequency score (5 = most orders)")
    ax.set_ylabel("recency score (5 = most recent)")
    ax.set_title("Buyers by recency and frequency score (cell: buyers, average spend)")
    return png_bytes(figure)


@styled
def retention_chart(weekly: pd.DataFrame) -> bytes:
    if weekly.empty:
        return placeholder_chart("Weekly cohort retention", "No complete weekly cohorts yet")
    rates = weekly.pivot(index="cohort", columns="period", values="retention_rate").sort_index()
    sizes = weekly.groupby("cohort")["cohort_size"].first().reindex(rates.index)
    values = rates.to_numpy(dtype=float)
    labels = [[percent(v) if np.isfinite(v) else "" for v in row] for row in values]
    figure, axes = new_figure(9, 0.38 * len(rates) + 1.6)
    ax = axes[0, 0]
    image = annotated_heatmap(ax, values, labels)
    image.set_clim(0, 1)
    ax.set_xticks(range(len(rates.columns)), [f"wk {p}" for p in rates.columns])
    cohort_labels = [f"{pd.Timestamp(c).date().isoformat()} (n={int(n):,})" for c, n in sizes.items()]
    ax.set_yticks(range(len(rates.index)), cohort_labels)
    ax.set_xlabel("weeks since first activity")
    ax.set_title("Weekly cohort retention (share of the cohort active again)")
    return png_bytes(figure)


@styled
def funnel_chart(steps: pd.DataFrame) -> bytes:
    overall = steps[steps["channel"] == "all"]
    if overall.empty:
        return placeholder_chart("Conversion funnel", "No product views yet")
    figure, axes = new_figure(11, 3.8, 1, 2)
    left, right = axes[0]
    bars = left.bar(overall["step_name"], overall["users"], color=CHANNEL_COLOURS["all"])
    label_bars(
        left,
        bars,
        [
            f"{n:,}\n{percent(c)}"
            for n, c in zip(overall["users"], overall["conversion_from_first"], strict=True)
        ],
    )
    left.set_ylabel("people")
    left.set_title("All channels: people reaching each step")
    left.tick_params(axis="x", labelrotation=15)
    left.margins(y=0.2)
    for channel, rows in steps.groupby("channel", sort=False):
        right.plot(
            rows["step_name"],
            rows["conversion_from_first"],
            marker="o",
            linewidth=2.5 if channel == "all" else 1.6,
            color=CHANNEL_COLOURS.get(channel, CHANNEL_COLOURS["other"]),
            label=channel,
        )
    right.set_ylim(0, 1.05)
    right.yaxis.set_major_formatter(ticker.PercentFormatter(1.0))
    right.set_ylabel("share of product viewers")
    right.set_title("By channel: conversion from first step")
    right.tick_params(axis="x", labelrotation=15)
    right.legend(frameon=False, fontsize=8)
    return png_bytes(figure)


@styled
def activity_chart(grid: pd.DataFrame) -> bytes:
    if int(grid.to_numpy().sum()) == 0:
        return placeholder_chart("Events by weekday and hour", "No tracked activity yet")
    figure, axes = new_figure(11, 3.6)
    ax = axes[0, 0]
    image = ax.imshow(grid.to_numpy(dtype=float), cmap=HEATMAP_COLOURS, aspect="auto")
    figure.colorbar(image, ax=ax, label="events", shrink=0.9)
    ax.set_xticks(range(0, 24, 2), [f"{h:02d}" for h in range(0, 24, 2)])
    ax.set_yticks(range(7), WEEKDAYS)
    ax.set_xlabel("hour of day (local time)")
    ax.spines[:].set_visible(False)
    ax.set_title("Events by weekday and hour")
    return png_bytes(figure)


@styled
def geography_chart(provinces: pd.DataFrame, limit: int = 12) -> bytes:
    if provinces.empty:
        return placeholder_chart("People and revenue by province", "No people with a known location yet")
    top = provinces.head(limit)
    figure, axes = new_figure(11, 0.34 * len(top) + 1.4, 1, 2)
    left, right = axes[0]
    known = [MUTED if label == UNKNOWN else ACCENT for label in top["label"]]
    bars = left.barh(top["label"], top["users"], color=known)
    label_bars(left, bars, [f"{n:,}" for n in top["users"]])
    left.set_title("People by province")
    left.set_xlabel("people")
    known = [MUTED if label == UNKNOWN else CONTRAST for label in top["label"]]
    bars = right.barh(top["label"], top["revenue"], color=known)
    label_bars(right, bars, [yuan(v) for v in top["revenue"]])
    right.set_title("Paid revenue by province")
    right.set_xlabel("yuan")
    right.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: yuan(v)))
    for ax in (left, right):
        ax.invert_yaxis()
        ax.margins(x=0.2)
    return png_bytes(figure)


@styled
def clv_chart(values: pd.DataFrame) -> bytes:
    if values.empty:
        return placeholder_chart("Customer lifetime value", "No buyers scored yet")
    figure, axes = new_figure(11, 3.6, 1, 2)
    left, right = axes[0]
    expected = values["expected_value"]
    cap = float(expected.quantile(0.99)) if len(expected) > 1 else float(expected.max())
    left.hist(expected.clip(upper=cap), bins=30, color=ACCENT)
    left.axvline(
        float(expected.median()), color=CONTRAST, linestyle="--", label=f"median {yuan(expected.median())}"
    )
    left.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: yuan(v)))
    left.set_xlabel("expected value over the horizon (top 1% clipped)")
    left.set_ylabel("buyers")
    left.set_title("Expected value per buyer")
    left.legend(frameon=False)
    right.hist(values["p_alive"].dropna(), bins=np.linspace(0, 1, 21), color=STAGE_COLOURS["growing"])
    right.axvline(0.5, color=CONTRAST, linestyle="--", label="0.5")
    right.set_xlabel("probability the buyer is still active (p_alive)")
    right.set_ylabel("buyers")
    right.set_title("Probability alive")
    right.legend(frameon=False)
    return png_bytes(figure)


@styled
def tags_chart(tags: pd.DataFrame, people: int) -> bytes:
    """Tags whose English label is plain text; per-category tags carry Chinese names and stay in the table."""
    drawable = tags[tags["label_en"].astype(str).map(str.isascii)]
    if drawable.empty:
        return placeholder_chart("Most common tags", "No tag has members yet")
    figure, axes = new_figure(8, 0.32 * len(drawable) + 1.2)
    ax = axes[0, 0]
    bars = ax.barh(drawable["label_en"].astype(str), drawable["members"], color=ACCENT)
    label_bars(ax, bars, [f"{n:,} ({percent(n / max(people, 1))})" for n in drawable["members"]])
    ax.invert_yaxis()
    ax.set_xlabel("people")
    ax.set_title("Most common tags (per-category tags are in the table below)")
    ax.margins(x=0.2)
    return png_bytes(figure)


def html_table(
    frame: pd.DataFrame, columns: Mapping[str, str], formats: Mapping[str, Callable] | None = None
) -> str:
    """A small escaped table; `columns` maps frame columns to headers, `formats` formats cell values."""
    formats = formats or {}
    if frame.empty:
        return ""
    head = "".join(f"<th>{html.escape(header)}</th>" for header in columns.values())
    body = []
    for _, row in frame.iterrows():
        cells = []
        for column in columns:
            value = row[column]
            text = "" if value is None or (not isinstance(value, str) and pd.isna(value)) else value
            text = formats[column](text) if column in formats and text != "" else str(text)
            numeric = isinstance(value, int | float | np.number) and not isinstance(value, bool)
            cells.append(f'<td class="{"num" if numeric else "text"}">{html.escape(text)}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def data_uri(png: bytes) -> str:
    """Images travel inside the page, so the report opens without a network."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


STYLESHEET = """
:root { --accent: #2F6690; --ink: #1f2a33; --muted: #5c6b77; --line: #dfe5ea; }
* { box-sizing: border-box; }
body { margin: 0; background: #f4f6f8; color: var(--ink);
  font: 15px/1.5 -apple-system, "Segoe UI", "PingFang SC", "Hiragino Sans GB", "Microsoft YaHei",
  "Noto Sans CJK SC", "Source Han Sans SC", "WenQuanYi Micro Hei", sans-serif; }
header { background: #16425B; color: white; padding: 28px 32px 20px; }
header h1 { margin: 0 0 4px; font-size: 26px; }
header p { margin: 0; opacity: .85; }
.kpis { display: grid; grid-template-columns: repeat(auto-fit, minmax(170px, 1fr)); gap: 14px;
  margin-top: 18px; }
.kpi { background: rgba(255,255,255,.1); border-radius: 8px; padding: 12px 16px; }
.kpi .value { font-size: 26px; font-weight: 700; }
.kpi .label { font-size: 13px; opacity: .85; }
nav { padding: 10px 32px; background: white; border-bottom: 1px solid var(--line); font-size: 14px; }
nav a { color: var(--accent); margin-right: 14px; text-decoration: none; white-space: nowrap; }
main { max-width: 1160px; margin: 0 auto; padding: 20px; }
section { background: white; border: 1px solid var(--line); border-radius: 10px; padding: 18px 22px;
  margin-bottom: 18px; }
section h2 { margin: 0 0 6px; font-size: 19px; }
.takeaway { margin: 0 0 12px; font-size: 16px; color: var(--accent); font-weight: 600; }
figure { margin: 0 0 12px; }
figure img { max-width: 100%; height: auto; display: block; }
table { border-collapse: collapse; width: 100%; font-size: 14px; }
th, td { border-bottom: 1px solid var(--line); padding: 6px 8px; text-align: left; vertical-align: top; }
th { color: var(--muted); font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
footer { color: var(--muted); font-size: 13px; text-align: center; padding: 10px 0 30px; }
"""


def kpi_cards(kpis: Mapping[str, float]) -> list[tuple[str, str]]:
    """Label and formatted value of each headline number, shared by the page and the Dagster metadata."""
    return [
        ("people", f"{int(kpis['people']):,}"),
        ("buyers", f"{int(kpis['buyers']):,}"),
        ("paid revenue", yuan(kpis["revenue"])),
        ("DAU / MAU (30-day average)", percent(kpis["dau_mau"])),
    ]


def render_section(section: Section) -> str:
    """Title, takeaway first (the point), then charts and table (the evidence)."""
    figures = "".join(
        f'<figure><img src="{data_uri(chart.png)}" alt="{html.escape(chart.alt)}"></figure>'
        for chart in section.charts
    )
    return (
        f'<section id="{html.escape(section.key)}"><h2>{html.escape(section.title)}</h2>'
        f'<p class="takeaway">{html.escape(section.takeaway)}</p>{figures}{section.table_html}</section>'
    )


def render_html(kpis: Mapping[str, float], sections: list[Section], as_of: date) -> str:
    """One self-contained page: inline CSS, base64 images, no scripts and no links off the page."""
    cards = "".join(
        f'<div class="kpi"><div class="value">{html.escape(value)}</div>'
        f'<div class="label">{html.escape(label)}</div></div>'
        for label, value in kpi_cards(kpis)
    )
    nav = "".join(f'<a href="#{html.escape(s.key)}">{html.escape(s.title)}</a>' for s in sections)
    body = "".join(render_section(section) for section in sections)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Huaxiang 画像 report — {as_of.isoformat()}</title><style>{STYLESHEET}</style></head><body>"
        f"<header><h1>Huaxiang 画像 · user profile report</h1>"
        f'<p>As of <time datetime="{as_of.isoformat()}">{as_of.isoformat()}</time></p>'
        f'<div class="kpis">{cards}</div></header><nav>{nav}</nav><main>{body}</main>'
        "<footer>Generated by Huaxiang from the marts schema; every takeaway is computed from the data."
        "</footer>"
        "</body></html>\n"
    )


def build_sections(marts: Mapping[str, pd.DataFrame]) -> list[Section]:
    """Every section of the report, in reading order: who they are, how they move, where value is."""
    profile = marts["user_profile"]
    people = len(profile)
    segments = segment_sizes(profile)
    sizes = persona_sizes(marts["personas"])
    features = persona_top_features(marts["personas"])
    stages = lifecycle_counts(profile)
    moves = latest_transitions(marts["lifecycle_transitions"])
    grid = rfm_grid(profile)
    weekly = weekly_retention(marts["kpi_retention"])
    steps = funnel_steps(marts["kpi_funnel"])
    activity = activity_grid(marts["kpi_activity_heatmap"])
    provinces = province_totals(marts["kpi_geo"])
    clv = clv_values(profile)
    rules = top_rules(marts["association_rules"])
    tags = top_tags(marts["tag_catalogue"])
    share = {"share": percent}
    return [
        Section(
            "segments", "RFM segments", segment_takeaway(segments),
            (Chart("People per RFM segment", segment_chart(segments)),),
        ),
        Section(
            "personas", "Personas", persona_takeaway(sizes),
            (Chart("People per persona", persona_size_chart(sizes)),),
            html_table(
                sizes,
                {"name_zh": "画像", "name_en": "persona", "size": "people", "share": "share",
                 "description_zh": "描述"},
                share,
            ),
        ),
        Section(
            "persona-profiles", "Persona profiles", persona_features_takeaway(features),
            (Chart("Top features per persona", persona_features_chart(features)),),
        ),
        Section(
            "lifecycle", "Lifecycle stages", lifecycle_takeaway(stages),
            (Chart("People per lifecycle stage", lifecycle_chart(stages)),),
        ),
        Section(
            "transitions", "Lifecycle transitions", transitions_takeaway(moves),
            (Chart("Lifecycle moves since the previous run", transitions_chart(moves)),),
        ),
        Section(
            "rfm", "RFM grid", rfm_takeaway(grid),
            (Chart("Buyers by recency and frequency score", rfm_chart(grid)),),
        ),
        Section(
            "retention", "Weekly retention", retention_takeaway(weekly),
            (Chart("Weekly cohort retention", retention_chart(weekly)),),
        ),
        Section(
            "funnel", "Conversion funnel", funnel_takeaway(steps),
            (Chart("Conversion funnel, all channels and by channel", funnel_chart(steps)),),
        ),
        Section(
            "activity", "When people are active", activity_takeaway(activity),
            (Chart("Events by weekday and hour", activity_chart(activity)),),
        ),
        Section(
            "geography", "Provinces", geography_takeaway(provinces),
            (Chart("People and revenue by province", geography_chart(provinces)),),
            html_table(
                provinces.head(12),
                {"province": "省份", "label": "province", "users": "people", "buyers": "buyers",
                 "revenue": "paid revenue", "revenue_share": "share of revenue"},
                {"revenue": yuan, "revenue_share": percent},
            ),
        ),
        Section(
            "clv", "Customer lifetime value", clv_takeaway(clv),
            (Chart("Expected value and probability alive", clv_chart(clv)),),
        ),
        Section(
            "rules", "Bought together", rules_takeaway(rules), (),
            html_table(
                rules,
                {"level": "level", "antecedent": "if they buy", "consequent": "they also buy",
                 "support": "support", "confidence": "confidence", "lift": "lift"},
                {"support": percent, "confidence": percent, "lift": lambda v: f"{v:.2f}"},
            ),
        ),
        Section(
            "tags", "Tags", tags_takeaway(tags, people),
            (Chart("Most common tags", tags_chart(tags, people)),),
            html_table(tags, {"label_zh": "标签", "label_en": "tag", "members": "people"}),
        ),
    ]  # fmt: skip


def build_report(marts: Mapping[str, pd.DataFrame], as_of: date) -> Report:
    """The page plus the numbers and sections the Dagster metadata reuses."""
    sections = build_sections(marts)
    kpis = headline_kpis(marts["user_profile"], marts["kpi_active_users"], as_of)
    return Report(html=render_html(kpis, sections, as_of), kpis=kpis, sections=tuple(sections))


def markdown_table(frame: pd.DataFrame) -> str:
    """A pipe table for Dagster's Markdown metadata, without the optional `tabulate` dependency."""

    def cell(value) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    header = "| " + " | ".join(cell(c) for c in frame.columns) + " |"
    rule = "|" + "---|" * len(frame.columns)
    rows = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


METADATA_IMAGES = ("segments", "funnel", "retention")


def report_metadata(report: Report, path: Path) -> dict[str, dg.MetadataValue]:
    """What the Dagster UI shows on the `report` asset: headline numbers, every takeaway, the key charts."""
    takeaways = pd.DataFrame(
        [(s.title, s.takeaway) for s in report.sections], columns=["section", "takeaway"]
    )
    headline = pd.DataFrame(kpi_cards(report.kpis), columns=["measure", "value"])
    by_key = {section.key: section for section in report.sections}
    metadata: dict[str, dg.MetadataValue] = {
        "path": dg.MetadataValue.path(str(path)),
        "people": dg.MetadataValue.int(int(report.kpis["people"])),
        "buyers": dg.MetadataValue.int(int(report.kpis["buyers"])),
        "revenue_yuan": dg.MetadataValue.float(round(report.kpis["revenue"], 2)),
        "dau_mau": dg.MetadataValue.float(round(report.kpis["dau_mau"], 4)),
        "headline": dg.MetadataValue.md(markdown_table(headline)),
        "takeaways": dg.MetadataValue.md(markdown_table(takeaways)),
    }
    for key in METADATA_IMAGES:
        chart = by_key[key].charts[0]
        metadata[f"chart_{key}"] = dg.MetadataValue.md(
            f"**{by_key[key].takeaway}**\n\n![{chart.alt}]({data_uri(chart.png)})"
        )
    return metadata


def write_report(content: str, path: Path) -> None:
    """Write beside the target and rename, so a browser never opens a half-written report."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".tmp")
    partial.write_text(content, encoding="utf-8")
    os.replace(partial, path)


def read_marts(conn) -> dict[str, pd.DataFrame]:
    """Every mart the report charts; only the profile columns it needs (the profile is wide)."""
    frames = {
        name: conn.execute(f"select * from marts.{name}").df()
        for name in REPORT_MARTS
        if name != "user_profile"
    }
    frames["user_profile"] = conn.execute(f"select {PROFILE_COLUMNS} from marts.user_profile").df()
    return frames


@dg.asset(
    name="report",
    group_name="serving",
    kinds={"python", "html"},
    deps=[dg.AssetKey(["marts", name]) for name in REPORT_MARTS],
)
def report(context: dg.AssetExecutionContext, huaxiang: HuaxiangResource) -> dg.MaterializeResult:
    """The static HTML report people open without a BI tool: headline KPIs, charts and their takeaways."""
    with huaxiang.connect(read_only=True) as conn:
        marts = read_marts(conn)
    built = build_report(marts, huaxiang.as_of_date())
    path = huaxiang.settings.report_path
    write_report(built.html, path)
    context.log.info(
        f"wrote the report ({len(built.html) / 1e6:.1f} MB, {len(built.sections)} sections) to {path}"
    )
    return dg.MaterializeResult(metadata=report_metadata(built, path))
