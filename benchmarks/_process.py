"""Whole-process timing for the start-up and busy-machine benchmarks: a child's own wall and CPU seconds."""

from __future__ import annotations

import os
import resource
import subprocess
import tempfile
import time


def wait_child(proc: subprocess.Popen, timeout: float) -> tuple[int, resource.struct_rusage, bool]:
    """(exit status, the child's own resource usage, whether it was killed at `timeout`)."""
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return proc.returncode, usage, False
        if time.monotonic() > deadline:
            proc.kill()
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = -9
            return -9, usage, True
        time.sleep(0.01)


def timed_run(cmd: list[str], env: dict[str, str] | None = None, timeout: float = 600) -> dict[str, object]:
    """Run `cmd` to the end: wall and CPU seconds (user + system) of that process, its exit code and output."""
    with tempfile.TemporaryFile() as log:
        tic = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        status, usage, timed_out = wait_child(proc, timeout)
        wall = time.perf_counter() - tic
        log.seek(0)
        output = log.read().decode(errors="replace")
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "status": status, "timed_out": timed_out,
            "output": output}
