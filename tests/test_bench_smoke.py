"""`make bench` cannot rot: its smoke profile runs every scenario and prints every figure.

Speeds are never asserted here (bench/README.md has the figures); only that the benchmark
ran end to end against both servers and that each run delivered what it sent.
"""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skip_with_test_mongo_uri(
    "the benchmark starts its own servers on the embedded store (bench/README.md) and only "
    "checks that `make bench` runs; it says nothing about a database server")

FIGURES = {
    "saturation.delivered_per_s": ("chatapp", "floor"),
    "saturation.server_cpu_pct": ("chatapp", "floor"),
    "saturation.generator_cpu_pct": ("chatapp", "floor"),
    "saturation.delivered_per_server_cpu_s": ("chatapp", "floor"),
    "latency.20.p50_ms": ("chatapp", "floor"),
    "latency.20.p95_ms": ("chatapp", "floor"),
    "latency.20.p99_ms": ("chatapp", "floor"),
    "latency.50.p50_ms": ("chatapp", "floor"),
    "latency.50.p95_ms": ("chatapp", "floor"),
    "latency.50.p99_ms": ("chatapp", "floor"),
    "idle.sockets": ("chatapp", "floor"),
    "idle.rss_per_connection_kib": ("chatapp", "floor"),
    "login_storm.p99_ms_without_logins": ("chatapp",),
    "login_storm.p99_ms_with_logins": ("chatapp",),
    "login_storm.p99_increase_pct": ("chatapp",),
    "login_storm.logins_done_in_time": ("chatapp",),
    "history.page_p50_ms": ("chatapp",),
    "history.page_p99_ms": ("chatapp",),
    "history.conversations_p50_ms": ("chatapp",),
    "history.conversations_p99_ms": ("chatapp",),
    "group.members": ("chatapp", "floor"),
    "group.5.deliveries_per_s": ("chatapp", "floor"),
    "group.5.p50_ms": ("chatapp", "floor"),
    "group.5.p99_ms": ("chatapp", "floor"),
    "group.saturation.deliveries_per_s": ("chatapp", "floor"),
    "group.saturation.deliveries_per_server_cpu_s": ("chatapp", "floor"),
    **{f"catchup.{conv}.{figure}": ("chatapp",) for conv in ("group", "direct")
       for figure in ("changes", "seed_ms_per_change",
                      *(f"{limit}.{what}" for limit in ("default_limit", "limit_500")
                        for what in ("calls", "call_p50_ms", "call_p99_ms", "total_p50_ms",
                                     "total_p99_ms", "server_cpu_ms")))},
    # Rich messages (issue 13, bench/rich.py).
    "search.messages": ("chatapp",),
    **{f"search.{query}.{q}_ms": ("chatapp",) for q in ("p50", "p99")
       for query in ("common", "rare", "two_words", "conversation", "before", "before_deep")},
    **{f"rich_page.{kind}.{q}_ms": ("chatapp",) for kind in ("plain", "rich")
       for q in ("p50", "p99")},
    **{f"attachments.{figure}": ("chatapp",) for figure in (
        "file_mib", "upload_mb_s", "download_mb_s", "upload.p50_ms", "upload.p99_ms",
        "download.p50_ms", "download.p99_ms", "upload.server_cpu_ms_per_mib",
        "download.server_cpu_ms_per_mib", "download.rss_growth_mib", "concurrent.uploads",
        "concurrent.aggregate_mb_s", "concurrent.rss_peak_growth_mib",
        "concurrent.stored_in_process_mib", "concurrent.file_x_uploads_mib",
        "concurrent.growth_beyond_stored_over_file_x_uploads")},
    # Flat costs (issue 14, bench/flat.py): each page in a small and a large store.
    "flat.small_store_messages": ("chatapp",), "flat.large_store_messages": ("chatapp",),
    **{f"flat.{call}.{what}": ("chatapp",)
       for call in ("newest", "after", "changes", "search", "list_per_entry")
       for what in ("small_cpu_ms", "large_cpu_ms", "large_over_small")},
    "flat.rss_per_stored_message_bytes": ("chatapp",),
    # The production shape (issue 14, target 1, bench/production.py): the store in its own process.
    "production.delivered_per_s": ("chatapp", "floor"),
    "production.delivered_per_server_cpu_s": ("chatapp", "floor"),
    "production.wire_cpu_ms_per_message": ("chatapp",),
    "production.round_trips_per_message": ("chatapp",),
    # The long-running tail (issue 14, target 2, bench/tail.py): a seeded server, gc pauses.
    **{f"{prefix}.{q}_ms": ("chatapp", "floor") for prefix in ("tail", "tail.freeze")
       for q in ("p99",)},
    "tail.p50_ms": ("chatapp", "floor"),
    **{f"{prefix}.{figure}": ("chatapp",) for prefix in ("tail", "tail.freeze")
       for figure in ("seeded_messages", "gc_gen2_count", "gc_gen2_total_ms",
                      "gc_gen2_longest_ms", "gc_all_gens_total_ms", "gc_gen2_life_count",
                      "gc_gen2_life_longest_ms")},
}
CHECKS = ["saturation.all_delivered_and_stored", "latency.20.all_delivered",
          "latency.50.all_delivered", "idle.all_received", "group.all_delivered_and_stored",
          "production.all_delivered_and_stored_once", "tail.all_delivered"]
# chatapp only (the floor stores nothing): every change reached the member catching up.
CHATAPP_CHECKS = ["catchup.group.all_arrived", "catchup.direct.all_arrived",
                  # Search answered what a model of the store says; the rich page showed what
                  # was sent; the downloaded bytes' sha256 matched the uploaded file's.
                  "search.all_correct", "rich_page.all_correct", "attachments.sha256_verified",
                  "attachments.all_correct"]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "figures.json"
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "run.py"), "--smoke",
                          "--json-out", str(out)], cwd=ROOT, capture_output=True, text=True,
                         timeout=240)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return run.stdout, json.loads(out.read_text())


def test_every_figure_is_printed_for_both_servers(smoke):
    stdout, data = smoke
    lines = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    printed = {line["figure"]: line for line in lines if "figure" in line}
    for figure, kinds in FIGURES.items():
        for kind in kinds:
            assert isinstance(printed[figure][kind], (int, float)), (figure, kind, printed[figure])
        assert f"| {figure} |" in stdout
    # A figure with a target says which, and whether it was met (either answer passes here).
    group = printed["group.saturation.deliveries_per_server_cpu_s"]
    assert group["target"] == "ratio >= 0.7" and group["met"] in (True, False), group
    for figure, target in (("production.delivered_per_server_cpu_s", "ratio >= 0.6"),
                           ("tail.p99_ms", "ratio <= 3.0"),
                           ("saturation.delivered_per_s", "ratio >= 0.6"),
                           ("login_storm.p99_increase_pct", "value < 100")):
        assert printed[figure]["target"] == target and printed[figure]["met"] in (True, False)
    assert data["figures"]["tail.freeze.all_delivered"] == {"chatapp": True}
    flat = printed["flat.newest.large_over_small"]
    assert flat["target"] == "value <= 1.5" and flat["met"] in (True, False), flat
    meta = next(line for line in lines if line.get("bench") == "meta")
    assert meta["cores"] >= 1 and meta["versions"]["flask-socketio"]


def test_every_run_delivered_and_stored_what_it_sent(smoke):
    _, data = smoke
    for figure in CHECKS:
        assert data["figures"][figure] == {"chatapp": True, "floor": True}, figure
    for figure in CHATAPP_CHECKS:
        scenario = figure.split(".")[0]
        detail = data["details"][scenario]["chatapp"]
        problems = [row["problems"] for row in detail.values()] if scenario == "catchup" \
            else detail["problems"]
        assert data["figures"][figure] == {"chatapp": True}, (figure, problems)


def test_catch_up_fetched_every_change_of_the_smoke_run(smoke):
    """The smoke catch-up pages (more than the default limit of changes) and ends at the
    conversation's version: the figures above come from the whole feed, not from one page."""
    _, data = smoke
    for conv in ("group", "direct"):
        row = data["details"]["catchup"]["chatapp"][conv]
        assert row["default_limit"]["calls"] >= 2, row["default_limit"]
        assert row["default_limit"]["pages"][-1][1] == row["changes"], row["default_limit"]
        assert row["limit_500"]["pages"][-1][1] == row["changes"], row["limit_500"]


def test_rich_message_figures_come_from_real_answers(smoke):
    """The search pages had matches to find and skip (a rare word outside the caller's
    conversations, deleted messages), the rich page carried what it compares, and the
    concurrent uploads all finished; the RSS bar is printed with its verdict (either passes)."""
    stdout, data = smoke
    search = data["details"]["search"]["chatapp"]["queries"]
    assert search["common"]["matching"] > 50 and search["before"]["results"] > 0, search
    assert 0 < search["rare"]["matching"] < 50 and search["two_words"]["matching"] > 0, search
    page = data["details"]["rich_page"]["chatapp"]["seeded"]["rich"]
    assert page["attachments"] and page["reactions"] and page["replies"], page
    transfer = data["details"]["attachments"]["chatapp"]
    assert transfer["concurrent"]["completed"] == transfer["concurrent"]["uploads"] >= 2
    printed = {line["figure"]: line for line in map(json.loads, (
        line for line in stdout.splitlines() if line.startswith('{"figure"')))}
    bar = printed["attachments.concurrent.growth_beyond_stored_over_file_x_uploads"]
    assert bar["target"] == "value < 1" and bar["met"] in (True, False), bar
