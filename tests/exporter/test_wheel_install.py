"""The wheel a user builds with ``pip wheel .`` installs into a bare venv on Python 3.10 and exports to a collector.

The oldest supported Python, a venv that has never seen this repository, the package installed the way a user
installs it, and the spans read back from what a real OTLP/HTTP endpoint (the local sink) received.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from ._otlp_sink import OtlpSink

pytestmark = pytest.mark.install

ROOT = Path(__file__).resolve().parents[2]
OLDEST_PYTHON = "3.10"

APP = textwrap.dedent("""
    import sys
    import fluxloop

    fluxloop.configure(collector_url=sys.argv[1], service_name="wheel-check")

    @fluxloop.agent(name="installed")
    def answer(question: str) -> str:
        return question.upper()

    assert answer("hi") == "HI"
    assert fluxloop.flush(timeout=60)
    print("%d.%d" % sys.version_info[:2], fluxloop.__version__, fluxloop.__file__, fluxloop.get_stats()["exported"])
""")


def _oldest_python() -> str:
    found = subprocess.run(["sh", str(ROOT / "mk" / "find-python.sh"), OLDEST_PYTHON], capture_output=True,
                           text=True)
    if found.returncode != 0:
        pytest.fail(found.stderr.strip())
    return found.stdout.strip()


def _run(argv: list[str], cwd: Path, env: dict[str, str]) -> str:
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{' '.join(argv)}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_built_wheel_installs_on_the_oldest_python_and_exports(sink: OtlpSink, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("FLUXLOOP_", "OTEL_", "PYTHON", "VIRTUAL_ENV"))}
    env.update(NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost", PIP_DISABLE_PIP_VERSION_CHECK="1")

    _run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q", "-w", str(tmp_path / "dist")],
         tmp_path, env)
    [wheel] = (tmp_path / "dist").glob("fluxloop-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = archive.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert "License-Expression: MIT" in metadata and "Requires-Python: >=3.10" in metadata
    assert "fluxloop/py.typed" in names and "fluxloop_otel_exporter/py.typed" in names

    venv = tmp_path / "venv"
    _run([_oldest_python(), "-m", "venv", str(venv)], tmp_path, env)
    python = str(venv / "bin" / "python")
    _run([python, "-m", "pip", "install", "-q", str(wheel)], tmp_path, env)
    app = tmp_path / "app.py"
    app.write_text(APP, encoding="utf-8")
    version, package_version, location, exported = _run([python, str(app), sink.url], tmp_path, env).split()

    assert version == OLDEST_PYTHON
    assert Path(location).is_relative_to(venv) and not Path(location).is_relative_to(ROOT)  # the installed copy
    assert exported == "1"
    [attempt] = sink.delivered()
    [resource_spans] = attempt.request.resource_spans
    resource = {kv.key: kv.value.string_value for kv in resource_spans.resource.attributes}
    assert resource["service.name"] == "wheel-check"
    assert resource["telemetry.distro.version"] == package_version == wheel.name.split("-")[1]
    assert [s.name for ss in resource_spans.scope_spans for s in ss.spans] == ["invoke_agent installed"]
    assert attempt.headers["content-encoding"] == "gzip"  # compressed on 3.10 too
    assert _run([str(venv / "bin" / "fluxloop"), "--version"], tmp_path, env).strip() == f"fluxloop {package_version}"
