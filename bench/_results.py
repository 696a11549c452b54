"""Record benchmark figures: a Markdown section in bench/RESULTS.md (with the machine) and flat keys
merged into bench/results.json, so that people and scripts read the same numbers."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import re
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS_MD = os.path.join(HERE, "RESULTS.md")
RESULTS_JSON = os.path.join(HERE, "results.json")


def machine() -> dict[str, Any]:
    """CPU model, cores, memory and GPU (if torch sees one)."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_gib = None
    try:
        with open("/proc/meminfo") as f:
            mem_gib = round(int(f.readline().split()[1]) / 1024**2, 1)
    except (OSError, ValueError, IndexError):
        pass
    gpu = None
    try:
        import torch

        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    except Exception:  # noqa: BLE001 - no torch is fine
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": mem_gib, "gpu": gpu,
            "python": platform.python_version()}


def machine_line(m: dict[str, Any] | None = None) -> str:
    m = m or machine()
    gpu = m.get("gpu") or "none"
    return f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, GPU: {gpu}, Python {m['python']}."


def record(section_title: str, markdown_body: str, flat: dict[str, Any],
           machine_info: dict[str, Any] | None = None) -> None:
    """Replace the `## section_title` section of RESULTS.md and merge `flat` into results.json."""
    date = _dt.date.today().isoformat()
    section = f"## {section_title}\n\n_{date}. {machine_line(machine_info)}_\n\n{markdown_body.strip()}\n"
    text = open(RESULTS_MD).read() if os.path.exists(RESULTS_MD) else "# Benchmark results\n\n"
    pattern = re.compile(rf"^## {re.escape(section_title)}\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(lambda _: section + "\n", text) if pattern.search(text) else text.rstrip() + "\n\n" + section
    with open(RESULTS_MD, "w") as f:
        f.write(text.rstrip() + "\n")
    data: dict[str, Any] = {}
    if os.path.exists(RESULTS_JSON):
        with open(RESULTS_JSON) as f:
            data = json.load(f)
    data.update(flat)
    with open(RESULTS_JSON, "w") as f:
        json.dump(dict(sorted(data.items())), f, indent=1)
        f.write("\n")


def table(headers: list[str], rows: list[list[Any]]) -> str:
    fmt = lambda v: f"{v:,.3g}" if isinstance(v, float) and abs(v) < 1000 else (f"{v:,.0f}" if isinstance(v, float) else str(v))  # noqa: E731
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)
