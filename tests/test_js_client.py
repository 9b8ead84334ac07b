"""The official socket.io-client (tests/js, Node) against the real server.

Each script exits non-zero with a `FAIL ...` line naming what went wrong. `make test` runs
`npm ci` in tests/js first; CI installs node (.ci/run).
"""
import shutil
import subprocess
from pathlib import Path

import pytest

JS_DIR = Path(__file__).resolve().parent / "js"
NODE = shutil.which("node")

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(NODE is None, reason="node is not installed (CI installs it: .ci/run)"),
]


def run_script(name, url, timeout=120):
    if not (JS_DIR / "node_modules" / "socket.io-client").is_dir():
        pytest.fail("tests/js/node_modules is missing: run `make test` or `cd tests/js && npm ci`")
    try:
        done = subprocess.run([NODE, name, url], cwd=JS_DIR, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{name} did not finish in {timeout}s: {exc.stdout} {exc.stderr}")
    output = f"{done.stdout}\n{done.stderr}".strip()
    assert done.returncode == 0, f"{name} failed (exit {done.returncode}):\n{output}"
    assert f"ok: {name.removesuffix('.mjs')}" in done.stdout, output


def test_connect_accepts_every_token_location_and_refuses_bad_tokens(live_server):
    run_script("connect.mjs", live_server.url)


def test_200_acked_messages_arrive_once_in_order_with_the_acked_ids(live_server):
    run_script("messages.mjs", live_server.url)


def test_original_api_message_envelope(live_server):
    run_script("envelope.mjs", live_server.url)
