"""pytest plugin for tests/torch_suite/run.py: one JSON line per finished test, progress lines.

Loaded with ``-p results_plugin``; configured by the environment the runner sets:
  TORCH_SUITE_RESULTS   JSON-lines file, appended to (test, outcome, seconds, message)
  TORCH_SUITE_RESUME=1  deselect the tests that file already holds (an interrupted run resumes)
  TORCH_SUITE_LOG_DIR   where ranks write <test>.rank<r>.log; kept only for tests that do not pass
  TORCH_SUITE_LABEL     prefix of the progress lines ("gradwire ws2")
"""

from __future__ import annotations

import glob
import json
import os
import re
import time

import pytest

_ORDER = {"passed": 0, "skipped": 1, "failed": 2, "error": 3}


def _test_name(nodeid: str) -> str:
    return nodeid.rsplit("::", 1)[-1]


def load_results(path: str) -> dict:
    """test name -> record; a later line for the same test replaces an earlier one."""
    records = {}
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line:
                    record = json.loads(line)
                    records[record["test"]] = record
    return records


_EXC_LINE = re.compile(r"^([A-Za-z_][\w.]*(Error|Exception|Timeout|Interrupt|Exit)\w*)(:.*)?$")


def one_line(text: str) -> str:
    """The most telling line of a failure: the first failing rank's own (last) exception."""
    lines = [ln[2:].strip() if ln.startswith("E ") else ln.strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln]
    # The runner's RuntimeError quotes each failed rank's traceback after "Process N exited
    # with error code ..."; in a chain of exceptions the last one is what the test saw.
    in_rank, found = False, ""
    for ln in lines:
        if ln.startswith("Process ") and "exited with error code" in ln:
            if found:
                break
            in_rank = True
        elif in_rank and _EXC_LINE.match(ln):
            found = ln
    if found:
        return found[:300]
    for ln in lines:
        if "terminated or timed out" in ln or ln.startswith("Timeout"):
            return ln[:300]
    for ln in reversed(lines):
        if _EXC_LINE.match(ln):
            return ln[:300]
    return (lines[-1] if lines else "")[:300]


class _Recorder:
    def __init__(self, config):
        self.path = os.environ["TORCH_SUITE_RESULTS"]
        self.log_dir = os.environ.get("TORCH_SUITE_LOG_DIR")
        self.label = os.environ.get("TORCH_SUITE_LABEL", "")
        self.resume = os.environ.get("TORCH_SUITE_RESUME") == "1"
        self.current: dict = {}
        self.started: dict = {}
        self.total = 0
        self.done_before = 0
        self.count = 0
        self.config = config

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, session, config, items):
        done = load_results(self.path) if self.resume else {}
        keep, drop = [], []
        for item in items:
            (drop if _test_name(item.nodeid) in done else keep).append(item)
        if drop:
            config.hook.pytest_deselected(items=drop)
            items[:] = keep
        self.done_before = len(drop)
        self.total = len(keep) + len(drop)

    @pytest.hookimpl(tryfirst=True)
    def pytest_report_teststatus(self, report, config):
        # No progress dots: the lines written in pytest_runtest_logfinish replace them.
        if report.when == "call" or not report.passed:
            category = "error" if report.failed and report.when != "call" else report.outcome
            return category, "", category.upper()
        return "", "", ""

    def pytest_runtest_logstart(self, nodeid, location):
        self.started[nodeid] = time.monotonic()
        self.current[nodeid] = {"outcome": "passed", "message": "", "detail": ""}

    def pytest_runtest_logreport(self, report):
        state = self.current.setdefault(
            report.nodeid, {"outcome": "passed", "message": "", "detail": ""}
        )
        if report.passed:
            return
        if report.skipped:
            outcome = "skipped"
            longrepr = report.longrepr
            reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
            message = reason.removeprefix("Skipped: ")
        else:
            outcome = "failed" if report.when == "call" else "error"
            detail = report.longreprtext
            for name, content in report.sections:
                detail += f"\n----- {name}\n{content}"
            message = one_line(report.longreprtext)
            state["detail"] = detail
        if _ORDER[outcome] >= _ORDER[state["outcome"]]:
            state["outcome"], state["message"] = outcome, message

    def pytest_runtest_logfinish(self, nodeid, location):
        state = self.current.pop(nodeid)
        name = _test_name(nodeid)
        seconds = time.monotonic() - self.started.pop(nodeid, time.monotonic())
        record = {
            "test": name,
            "outcome": state["outcome"],
            "seconds": round(seconds, 2),
            "message": state["message"],
        }
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        self._keep_logs(name, state)
        self.count += 1
        n = self.done_before + self.count
        line = f"[{self.label} {n}/{self.total}] {name} {state['outcome']} ({seconds:.1f}s)"
        if state["outcome"] != "passed" and state["message"]:
            line += f": {state['message'][:160]}"
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.ensure_newline()
            reporter.write_line(line)

    def _keep_logs(self, name: str, state: dict) -> None:
        if not self.log_dir:
            return
        rank_logs = sorted(glob.glob(os.path.join(self.log_dir, f"{name}.rank*.log")))
        if state["outcome"] in ("passed", "skipped"):
            for path in rank_logs:
                os.remove(path)
            return
        with open(os.path.join(self.log_dir, f"{name}.txt"), "w") as f:
            f.write(state["detail"])


def pytest_configure(config):
    if os.environ.get("TORCH_SUITE_RESULTS"):
        config.pluginmanager.register(_Recorder(config), "torch_suite_recorder")
