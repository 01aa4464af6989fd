"""The allocator settings of a recotorch process (`recotorch.core.allocator`): large freed blocks are
reused, not unmapped and faulted in again. Counted in page faults of a fresh process, not in seconds."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from recotorch.core.allocator import keep_freed_memory

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc settings")

# allocates, touches and frees a 48 MB block 20 times; prints the minor page faults of the loop
FAULTS = """
import json, resource
{setup}
def faults():
    start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):
        block = bytearray(48 << 20)
        block[::4096] = bytes(len(range(0, 48 << 20, 4096)))
        del block
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start
print(json.dumps(faults()))
"""
PAGES = (48 << 20) // 4096


def _faults(setup: str, env: dict[str, str] | None = None) -> int:
    proc = subprocess.run([sys.executable, "-c", FAULTS.format(setup=setup)], capture_output=True, text=True,
                          timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_the_defaults_fault_every_block_in_again():
    assert _faults("") >= 10 * PAGES  # what the setting is for: the check below could fail


def test_kept_memory_is_faulted_in_once():
    setup = "from recotorch.core.allocator import keep_freed_memory\nassert keep_freed_memory()"
    assert _faults(setup) < 3 * PAGES


def test_the_cli_entry_applies_it():
    setup = ("import sys\nfrom recotorch.cli import main\nsys.argv = ['recotorch', '--version']\n"
             "try:\n    main()\nexcept SystemExit:\n    pass")
    assert _faults(setup) < 3 * PAGES


@pytest.mark.parametrize("variable", ["MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES"])
def test_a_users_own_malloc_settings_are_left_alone(variable):
    assert keep_freed_memory({variable: "1"}) is False
