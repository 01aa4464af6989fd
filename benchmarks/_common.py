"""Shared bits of the benchmark scripts: machine description, result files, ml-100k location,
a server child process and a synthetic MF model for the load test (benchmarks never import tests/)."""

from __future__ import annotations

import json
import os
import platform
import resource
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    import torch  # here, not at the top: a peer's child process importing this module must not pay for torch

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


# ---- a `recotorch serve` child process -----------------------------------------------------
class ServerProcess:
    """`python -m recotorch serve MODEL_DIR --port P ARGS...` on a free loopback port, as a context manager."""

    def __init__(self, model_dir: str | Path, *args: str, timeout: float = 300) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.cmd = [sys.executable, "-m", "recotorch", "serve", str(model_dir), "--port", str(self.port), *args]
        self.timeout = timeout
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 (closed in __exit__)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def __enter__(self) -> ServerProcess:
        self.proc = subprocess.Popen(self.cmd, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._log.seek(0)
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n"
                                   f"{self._log.read().decode(errors='replace')[-3000:]}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as response:
                    if response.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.2)
        self.__exit__()
        raise TimeoutError(f"server did not answer /health within {self.timeout}s")

    def __exit__(self, *exc: Any) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
        self._log.close()


# ---- a large synthetic MF model ------------------------------------------------------------
def synthetic_mf(n_users: int, n_items: int, dim: int = 32, *, clusters: int = 256, seen_per_user: int = 20,
                 seed: int = 0) -> Any:
    """A fitted-looking `MatrixFactorization` made from random tensors: user ids 1..n_users, items "sku-0000001"...

    Vectors lie around `clusters` random taste centres (0: i.i.d. Gaussian, the worst case for an
    ANN index); each user has `seen_per_user` random seen items; ratings squash onto (0, 5.5).
    """
    import torch

    from recotorch.data.interactions import build_csr
    from recotorch.data.vocab import Vocab
    from recotorch.models.mf import DotBias, MatrixFactorization
    from recotorch.train.trainer import History

    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim), dtype=np.float32) if clusters > 0 else None

    def vectors(n: int, scale: float) -> torch.Tensor:
        if centres is None:
            return torch.from_numpy(rng.standard_normal((n, dim), dtype=np.float32) * scale)
        which = rng.integers(0, len(centres), n)
        noise = rng.standard_normal((n, dim), dtype=np.float32) * 0.5
        return torch.from_numpy(((centres[which] + noise) * scale).astype(np.float32))

    model = MatrixFactorization(dim=dim)
    model.users_ = Vocab(np.arange(1, n_users + 1, dtype=np.int64))
    model.items_ = Vocab([f"sku-{i:07d}" for i in range(1, n_items + 1)])
    model.rating_range_ = (0.0, 5.5)
    model.baseline_ = (3.5, torch.zeros(n_users), torch.zeros(n_items))
    module = DotBias(n_users, n_items, dim, model.rating_range_)
    with torch.no_grad():
        module.user_factors.weight.copy_(vectors(n_users, 1.0))
        module.item_factors.weight.copy_(vectors(n_items, 1.0 / np.sqrt(dim)))
        module.user_bias.weight.copy_(torch.from_numpy(rng.normal(0, 0.1, (n_users, 1)).astype(np.float32)))
        module.item_bias.weight.copy_(torch.from_numpy(rng.normal(0, 0.1, (n_items, 1)).astype(np.float32)))
    model.module_ = module.eval()
    model.history_ = History.from_dict({"epochs": [], "step_losses": [], "best_epoch": None})
    seen = min(seen_per_user, n_items)
    rows = torch.arange(n_users).repeat_interleave(seen)
    cols = torch.from_numpy(np.concatenate([rng.choice(n_items, seen, replace=False) for _ in range(n_users)]))
    model.seen_ = build_csr(rows, cols.to(torch.int64), n_users)
    model.item_features_ = None
    return model
