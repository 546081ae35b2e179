"""The README's two commands are the ones that work."""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile

import pytest

from tests.support.node import REPO_ROOT
from tests.support.processes import stop_process, wait_for_port

pytestmark = pytest.mark.integration


def readme_commands():
    text = open(os.path.join(REPO_ROOT, "README.md"), encoding="utf-8").read()
    return [line.strip() for line in text.splitlines() if line.startswith("    ")][:2]


def test_readme_opens_with_the_two_commands():
    run_node, run_tests = readme_commands()
    assert run_node.endswith("twistd -n zan-node")
    assert "pip install ." in run_node
    assert run_tests == "scripts/test"
    ci = open(os.path.join(REPO_ROOT, ".ci", "run"), encoding="utf-8").read()
    assert re.search(r"^exec scripts/test\s*$", ci, re.M), "CI must run the README's test command"


def _port_free(port):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def test_installed_twistd_runs_the_standalone_node_with_no_arguments():
    """The README's first command, minus the install the test script has just done."""
    twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
    if not os.path.exists(twistd):
        pytest.skip("no twistd next to this interpreter")
    if not (_port_free(12381) and _port_free(12380)):
        pytest.skip("the default ports are in use here")
    cwd = tempfile.mkdtemp(prefix="zan-readme-")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.Popen([twistd, "-n", "zan-node"], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_for_port(12381, 30, proc)
        out = subprocess.run(["redis-cli", "-p", "12381", "set", "foo", "bar"],
                             capture_output=True, text=True, timeout=10).stdout.strip()
        assert out == "OK"
        assert os.path.isdir(os.path.join(cwd, "zan-data"))
    finally:
        stop_process(proc, signal.SIGTERM)
        shutil.rmtree(cwd, ignore_errors=True)
