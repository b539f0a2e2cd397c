"""`mktpred report`: sections from a real converted capture plus a synthetic features table and model dir."""

from __future__ import annotations

import json
import math
import shutil
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from mktpred.cli.app import app
from mktpred.report import build_report, write_report
from mktpred.report.powerbi import export_powerbi

RECORDS = "coinbase-advanced-trade-2026-08-09.records.jsonl.zst"
SECTIONS = ("coverage", "market", "book_audit", "features", "models")
DAY1 = 1_786_000_000 * 10**9 // (86_400 * 10**9) * 86_400 * 10**9  # a UTC midnight
S = 10**9


class _Page(HTMLParser):
    """Collects section ids, svg count, every src/href, absent notes and the embedded JSON."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: list[str] = []
        self.svgs = 0
        self.links: list[str] = []
        self.absent: list[str] = []
        self.scripts = 0
        self._in: str | None = None
        self.json_text = ""
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "section":
            self.sections.append(a.get("id") or "")
        if tag == "svg":
            self.svgs += 1
        if tag == "script":
            self.scripts += 1
        for k, v in attrs:
            if k in ("src", "href", "xlink:href") and v is not None:
                self.links.append(v)
        if tag == "p" and a.get("class") == "absent":
            self._in = "absent"
        if tag == "pre" and a.get("id") == "report-json":
            self._in = "json"

    def handle_endtag(self, tag: str) -> None:
        if tag in ("p", "pre"):
            self._in = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._in == "absent":
            self.absent.append(data)
        elif self._in == "json":
            self.json_text += data


def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def _features(root: Path) -> None:
    """Two UTC days of a synthetic features table: fwd_ret_1s = 1e-4 * imb_1 exactly (correlation 1)."""
    rng = np.random.default_rng(7)
    for day in range(2):
        n = 50
        t = DAY1 + day * 86_400 * S + np.arange(n) * S
        imb = rng.uniform(-1, 1, n)
        spread = rng.uniform(0.5, 2.0, n)
        tbl = pa.table({"time": pa.array(t, pa.timestamp("ns", "UTC")), "product_id": ["BTC-<b>USD"] * n,
                        "valid": [True] * (n - 1) + [False], "mid": 100 + np.arange(n) * 0.01,
                        "spread": spread, "spread_bps": spread, "imb_1": imb, "fwd_ret_1s": 1e-4 * imb,
                        "fwd_ret_10s": -2e-4 * imb})
        d = root / "features" / f"date={(np.datetime64(DAY1 + day * 86_400 * S, 'ns')).astype(str)[:10]}"
        d.mkdir(parents=True)
        pq.write_table(tbl, d / "seg.parquet")


def _model(models: Path) -> dict[str, Any]:
    """A model dir whose evaluation has hand-checkable calibration and signal totals."""
    v = models / "m" / "v1"
    v.mkdir(parents=True)
    (models / "m" / "current").write_text("v1\n")
    fold = {"fold": 1, "rows": 4, "accuracy": 0.75, "balanced_accuracy": 0.75, "auc": 0.8, "log_loss": 0.6, "mcc": 0.5}
    spec = {"name": "m", "version": "v1", "model": "lightgbm", "target": "direction", "horizon": "10s",
            "horizon_s": 10, "features": ["imb_1"], "products": ["BTC-USD"],
            "train_span": {"start": "2026-08-09T00:00:00Z", "end": "2026-08-10T00:00:00Z"},
            "folds": [], "metrics": {"pooled": fold, "folds": [fold]},
            "baselines": {b: {"pooled": {**fold, "auc": 0.5}, "folds": [{**fold, "auc": 0.5}]}
                          for b in ("prior", "imbalance", "logistic")}}
    (v / "model.json").write_text(json.dumps(spec))
    # p > .5 on rows 0, 1 (long), p < .5 on rows 2, 3 (short): gross = .001 + (-.002) - (-.003) - .001 = .001
    ev = pa.table({"time": pa.array([DAY1 + i * S for i in range(4)], pa.timestamp("ns")),
                   "product_id": ["BTC-USD"] * 4, "fold": [1] * 4, "label": [1, 0, 0, 1],
                   "prediction": [0.95, 0.65, 0.15, 0.35], "fwd_ret": [0.001, -0.002, -0.003, 0.001],
                   "spread_bps": [2.0, 2.0, 2.0, 2.0], "baseline_prior": [0.5] * 4,
                   "baseline_imbalance": [0.5] * 4, "baseline_logistic": [0.5] * 4})
    pq.write_table(ev, v / "evaluation.parquet")
    return spec


@pytest.fixture(scope="module")
def real_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real capture converted once for the module (skipped without ../shared/samples)."""
    from tests.conftest import SAMPLES_DIR

    if not (SAMPLES_DIR / RECORDS).is_file():
        pytest.skip("../shared/samples is not present")
    root = tmp_path_factory.mktemp("store")
    (root / "raw").mkdir()
    shutil.copy(SAMPLES_DIR / RECORDS, root / "raw" / RECORDS)
    res = CliRunner().invoke(app, ["convert", "--raw-dir", str(root / "raw"), "--parquet-dir", str(root / "pq")],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    _features(root / "pq")
    _model(root / "models")
    return root


def test_report_every_section_and_chart_offline(real_store: Path, tmp_path: Path) -> None:
    """The page has every section with a chart, no script and no external URL; its JSON equals --json."""
    out = tmp_path / "r.html"
    res = CliRunner().invoke(app, ["report", "--parquet-dir", str(real_store / "pq"), "--models-dir",
                                   str(real_store / "models"), "--out", str(out), "--json"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    doc = orjson.loads(res.stdout)
    page = _parse(out)
    assert page.sections == list(SECTIONS)
    assert page.absent == []
    assert page.scripts == 0
    assert page.svgs >= 7  # coverage x2, market, audit, features x2, models x2
    external = [x for x in page.links if not x.startswith(("#", "data:"))]  # in-page anchors, inline images
    assert page.links and external == []
    assert json.loads(page.json_text) == doc["sections"]
    assert doc["bytes"] == out.stat().st_size
    cov = doc["sections"]["coverage"]
    assert sum(cov["frames_per_channel"].values()) == cov["frames"]
    assert doc["sections"]["book_audit"]["products"]["BTC-USD"]["tickers"] == 70  # as test_book_audit
    assert set(doc["sections"]["market"]["products"]) == {"BTC-USD", "ETH-USD"}
    text = "".join(page.text)
    assert f"{cov['frames']} frames" in text
    cells = page.text
    for channel, n in cov["frames_per_channel"].items():  # the table's cells are the --json numbers
        i = cells.index(channel)
        assert cells[i + 1] == str(n)
    for product, doc_p in doc["sections"]["market"]["products"].items():
        i = cells.index(product, cells.index("median_spread_bps"))
        assert cells[i + 1:i + 9] == [str(doc_p[k]) for k in doc_p]


def test_features_and_models_numbers(real_store: Path) -> None:
    """Correlations, calibration and signal totals equal hand-computed values; product text is escaped."""
    rep = build_report(real_store / "pq", real_store / "models")
    sec = {s.name: s for s in rep.sections}
    f = sec["features"].data
    assert f["rows"] == 98  # 2 x 50 minus the two invalid rows
    assert f["correlation"]["imb_1"] == {"fwd_ret_1s": 1.0, "fwd_ret_10s": -1.0}
    m = sec["models"].data["models"]["m/v1"]
    assert m["signal"] == {"rows": 4, "trades": 4, "cum_return": 0.001, "cum_return_net": round(0.001 - 4e-4, 6)}
    assert [(c["bin"], c["rows"], c["frac_up"]) for c in m["calibration"]] == [(1, 1, 0.0), (3, 1, 1.0), (6, 1, 0.0),
                                                                               (9, 1, 1.0)]
    assert m["baselines"]["prior"]["folds"][0]["auc"] == 0.5
    html = write_report(rep, real_store / "x.html").out
    assert html is not None
    raw = html.read_text()
    assert "BTC-&lt;b&gt;USD" in raw and "BTC-<b>USD" not in raw


def test_feature_correlation_is_within_products(tmp_path: Path) -> None:
    """Two products at different levels: pooled, ``mid`` and the label would correlate near -1 by the
    levels alone; within products (each product's mean removed) the correlation is exactly 0."""
    from mktpred.report.features import features_section

    t = DAY1 + np.arange(6) * S
    tbl = pa.table({"time": pa.array(t, pa.timestamp("ns", "UTC")),
                    "product_id": ["AAA-USD"] * 3 + ["BBB-USD"] * 3, "valid": [True] * 6,
                    "mid": [1.0, 2.0, 3.0, 101.0, 102.0, 103.0],
                    "fwd_ret_1s": [1e-4, 2e-4, 3e-4, -1e-4, -2e-4, -3e-4]})
    d = tmp_path / "features" / "date=2026-08-09"
    d.mkdir(parents=True)
    pq.write_table(tbl, d / "seg.parquet")
    pooled = float(np.corrcoef(tbl.column("mid").to_numpy(), tbl.column("fwd_ret_1s").to_numpy())[0, 1])
    assert pooled < -0.8  # what a pooled correlation would have shown
    assert features_section(tmp_path).data["correlation"]["mid"]["fwd_ret_1s"] == 0.0


def test_a_damaged_file_is_named_in_its_section_not_raised(real_store: Path, tmp_path: Path) -> None:
    """A truncated ticker file: the sections that read it say it could not be read, the others are
    still computed, and the page is still written."""
    import shutil

    from mktpred.report import build_report, write_report

    store = tmp_path / "store"
    shutil.copytree(real_store / "pq", store)
    victim = next((store / "ticker").glob("*/*.parquet"))
    victim.write_bytes(victim.read_bytes()[:100])
    report = write_report(build_report(store, real_store / "models"), tmp_path / "r.html")
    by = {s.name: s for s in report.sections}
    assert not by["market"].available and "could not be read" in by["market"].reason
    assert by["features"].available and by["models"].available  # they do not read the ticker
    assert report.bytes > 0 and (tmp_path / "r.html").is_file()


def test_absent_sections_say_so(tmp_path: Path) -> None:
    """An empty store and no models: every section is present and says why it is absent; exit 0."""
    out = tmp_path / "r.html"
    (tmp_path / "none").mkdir()
    res = CliRunner().invoke(app, ["report", "--parquet-dir", str(tmp_path / "none"), "--models-dir",
                                   str(tmp_path / "nomodels"), "--out", str(out)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    page = _parse(out)
    assert page.sections == list(SECTIONS)
    assert len(page.absent) == 5 and page.svgs == 0
    assert any("messages" in a for a in page.absent)
    missing = CliRunner().invoke(app, ["report", "--parquet-dir", str(tmp_path / "nowhere")])
    assert missing.exit_code == 2 and missing.output.startswith("error: no Parquet store")


def test_powerbi_tables_read_back_incremental(real_store: Path, tmp_path: Path) -> None:
    """Power BI folders read back by DuckDB with the source row counts and ISO times; a re-run rewrites nothing."""
    import duckdb

    real_store = Path(shutil.copytree(real_store, tmp_path / "store"))  # this test changes a source
    out = tmp_path / "pbi"
    first = export_powerbi(real_store / "pq", real_store / "models", out)
    assert first["features"] == {"written": 2, "skipped": 0}
    assert first["daily_metrics"] == {"written": 1, "skipped": 0}
    con = duckdb.connect()
    n = con.execute(f"SELECT count(*) FROM read_parquet('{out}/parquet/features/*/*.parquet')").fetchone()
    assert n == (100,)
    csv = con.execute(f"SELECT time, imb_1 FROM read_csv('{out}/csv/features/*/*.csv', all_varchar=true) ORDER BY time"
                  ).fetchall()
    assert len(csv) == 100
    assert csv[0][0] == np.datetime_as_string(np.datetime64(DAY1, "ns")) + "Z"
    dm = con.execute(f"SELECT rows, accuracy, auc, signed_return FROM read_csv('{out}/csv/daily_metrics/*/*.csv')"
                     ).fetchall()
    assert len(dm) == 1 and dm[0][:3] == (4, 0.5, 0.75) and math.isclose(dm[0][3], 0.001)  # AUC: 3 of 4 pairs
    frames = con.execute(f"SELECT sum(frames) FROM read_parquet('{out}/parquet/coverage_hourly/*/*.parquet')").fetchone()
    total = con.execute(f"SELECT count(*) FROM read_parquet('{real_store}/pq/messages/*/*.parquet')").fetchone()
    assert frames == total
    hour = con.execute(f"SELECT hour FROM read_csv('{out}/csv/coverage_hourly/*/*.csv', all_varchar=true)").fetchone()
    assert hour is not None and hour[0].endswith(":00:00.000000000Z")
    again = export_powerbi(real_store / "pq", real_store / "models", out)
    assert all(v["written"] == 0 for v in again.values())
    one = sorted((real_store / "pq" / "features").glob("date=*"))[1] / "seg.parquet"
    pq.write_table(pq.read_table(one).slice(0, 10), one)  # the second day's source changes
    third = export_powerbi(real_store / "pq", real_store / "models", out)
    assert third["features"] == {"written": 1, "skipped": 1}
    n = con.execute(f"SELECT count(*) FROM read_csv('{out}/csv/features/*/*.csv')").fetchone()
    assert n == (60,)


def test_headless_chromium_renders_the_page(real_store: Path, tmp_path: Path) -> None:
    """Headless Chromium, offline, renders the report to a PNG that is not blank (skipped without chromium)."""
    import subprocess

    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    rep = write_report(build_report(real_store / "pq", real_store / "models"), tmp_path / "r.html")
    assert rep.out is not None
    png = tmp_path / "shot.png"
    subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
                    "--proxy-server=127.0.0.1:9", "--window-size=1200,4000", f"--screenshot={png}",
                    rep.out.as_uri()], check=True, capture_output=True, timeout=60)
    from PIL import Image

    img = np.asarray(Image.open(png).convert("L"))
    assert img.shape[0] >= 1000
    dark = (img < 128).mean()
    assert 0.005 < dark < 0.5  # text and lines drawn on a white page, not blank


def test_powerbi_daily_metrics_keep_every_model(tmp_path: Path) -> None:
    """Two current models evaluated on the same day give two rows in that day's one file."""
    import duckdb

    (tmp_path / "pq").mkdir()
    _model(tmp_path / "models")
    shutil.copytree(tmp_path / "models" / "m", tmp_path / "models" / "m2")
    res = export_powerbi(tmp_path / "pq", tmp_path / "models", tmp_path / "pbi")
    assert res == {"daily_metrics": {"written": 1, "skipped": 0}}
    rows = duckdb.connect().execute(
        f"SELECT model, rows FROM read_parquet('{tmp_path}/pbi/parquet/daily_metrics/*/*.parquet') ORDER BY model"
    ).fetchall()
    assert rows == [("m/v1", 4), ("m2/v1", 4)]


def test_broken_model_dirs_are_reported_not_raised(tmp_path: Path) -> None:
    """An unreadable model.json and an evaluation without spread_bps are named in the page, not raised."""
    (tmp_path / "pq").mkdir()
    models = tmp_path / "models"
    _model(models)
    shutil.copytree(models / "m", models / "bad")
    (models / "bad" / "v1" / "model.json").write_text("{not json")
    ev = pq.read_table(models / "m" / "v1" / "evaluation.parquet").drop_columns(["spread_bps"])
    pq.write_table(ev, models / "m" / "v1" / "evaluation.parquet")
    rep = write_report(build_report(tmp_path / "pq", models), tmp_path / "r.html")
    doc = rep.to_dict()["sections"]["models"]["models"]
    assert doc["bad/v1"]["error"].startswith("model.json unreadable")
    assert doc["m/v1"]["evaluation"] == "evaluation.parquet lacks spread_bps"
    text = "".join(_parse(tmp_path / "r.html").text)
    assert "model.json unreadable" in text and "evaluation.parquet lacks spread_bps" in text
    assert export_powerbi(tmp_path / "pq", models, tmp_path / "pbi") == {"daily_metrics": {"written": 1, "skipped": 0}}
    import duckdb

    kept = duckdb.connect().execute(
        f"SELECT DISTINCT model FROM read_parquet('{tmp_path}/pbi/parquet/daily_metrics/*/*.parquet')").fetchall()
    assert kept == [("bad/v1",)]  # the evaluation without spread_bps is left out


def test_coverage_counts_gaps_and_silences_by_hand(tmp_path: Path) -> None:
    """Hand-built messages (3 frames, a 12 s hole on one conn) and one gap event give the expected coverage."""
    from mktpred.report.coverage import coverage_section
    from mktpred.store import open_store
    from mktpred.store.schemas import EVENTS, MESSAGES

    t0 = DAY1 + 3600 * S
    times = [t0, t0 + 1 * S, t0 + 13 * S, t0 + 70 * S]
    msgs = pa.table({"recv_time": pa.array(times, pa.timestamp("ns", "UTC")),
                     "time": pa.array(times, pa.timestamp("ns", "UTC")), "conn": ["a", "a", "a", "b"],
                     "seq": [0, 1, 2, 0], "channel": ["l2_data", "heartbeats", "l2_data", "l2_data"],
                     "n_events": [1, 1, 1, 1], "n_rows": [1, 0, 1, 1]}, schema=MESSAGES)
    date = np.datetime_as_string(np.datetime64(t0, "ns"))[:10]
    for table, data in (("messages", msgs), ("events", pa.table(
            {"recv_time": pa.array([t0 + 2 * S], pa.timestamp("ns", "UTC")),
             "time": pa.array([t0 + 2 * S], pa.timestamp("ns", "UTC")), "conn": ["a"], "event": ["gap"],
             "expected": [2], "got": [5], "detail": [None]}, schema=EVENTS))):
        (tmp_path / table / f"date={date}").mkdir(parents=True)
        pq.write_table(data, tmp_path / table / f"date={date}" / "s.parquet")
    sec = coverage_section(open_store(tmp_path), max_silence_s=5.0)
    d = sec.data
    assert d["frames"] == 4 and d["minutes"] == 2
    assert d["frames_per_channel"] == {"heartbeats": 1, "l2_data": 3}
    assert sec.series["per_channel"]["l2_data"] == {t0: 2, t0 + 60 * S: 1}
    assert d["gaps"] == [{"time_ns": t0 + 2 * S, "conn": "a", "expected": 2, "got": 5}]
    assert d["silences"] == [{"conn": "a", "start_ns": t0 + S, "end_ns": t0 + 13 * S, "seconds": 12.0}]
    assert d["first"].endswith("T01:00:00.000000000Z")


def test_unwritable_out_is_one_line_exit_3(tmp_path: Path) -> None:
    """--out under a regular file fails with one `error:` line and exit 3, no traceback."""
    (tmp_path / "pq").mkdir()
    (tmp_path / "file").write_text("x")
    res = CliRunner().invoke(app, ["report", "--parquet-dir", str(tmp_path / "pq"), "--models-dir",
                                   str(tmp_path / "m"), "--out", str(tmp_path / "file" / "r.html")])
    assert res.exit_code == 3
    errors = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: cannot write the report")
    assert "Traceback" not in res.output
