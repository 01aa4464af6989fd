"""Shared bits of the benchmark scripts: machine description, result files, ml-100k location."""

from __future__ import annotations

import json
import os
import platform
import resource
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "python": platform.python_version(), "cuda": torch.cuda.get_device_name() if torch.cuda.is_available()
            else None, "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def ml100k_dir() -> Path:
    root = os.environ.get("RECOTORCH_DATA_DIR")
    candidates = [Path(root) / "ml-100k"] if root else []
    candidates.append(Path(__file__).resolve().parents[2] / "shared" / "data" / "ml-100k")
    for c in candidates:
        if (c / "u.data").exists():
            return c
    raise SystemExit(f"ml-100k not found in {candidates}; set RECOTORCH_DATA_DIR")


def write_results(name: str, payload: dict[str, Any], markdown: str) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(payload, indent=2) + "\n")
    (RESULTS / f"{name}.md").write_text(markdown)
