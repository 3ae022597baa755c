"""The README's publisher examples run as written (against a real hub instead of :8080)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Dict

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_publisher_examples_run(hub: Any, capsys: Any) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    runnable = [b for b in blocks if "herald." in b and "Celery" not in b and "django" not in b
                and "FastAPI" not in b and "Subscriber" not in b]
    assert len(runnable) >= 3
    ns: Dict[str, Any] = {}
    for block in runnable:
        exec(compile(block.replace("http://127.0.0.1:8080", hub.url), "README.md", "exec"), ns)
    ns["herald"].close()
    out = capsys.readouterr().out
    assert re.search(r"^\S+-\d+ 0$", out, re.M)  # print(r.id, r.delivered): nobody online


def test_readme_examples_compile() -> None:
    for block in re.findall(r"```python\n(.*?)```", README.read_text(), re.S):
        compile(block, "README.md", "exec")
