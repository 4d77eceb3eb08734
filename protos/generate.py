"""Regenerate the Python bindings for workerstate.proto (run by `make proto`).

The output lands next to the .proto, under the import path protoc derives from `-I protos`
(`workerstate/v1/...`), so the generated imports work without rewriting. A test runs this
into a temporary folder and compares with the committed copies to catch stale code.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

PROTOS = Path(__file__).resolve().parent
SOURCE = "workerstate/v1/workerstate.proto"


def generate(out: Path) -> None:
    """Write *_pb2.py, *_pb2.pyi, *_pb2_grpc.py and *_pb2_grpc.pyi under `out`."""
    plugin = shutil.which("protoc-gen-mypy_grpc", path=str(Path(sys.executable).parent))
    if plugin is None:
        sys.exit("protoc-gen-mypy_grpc not found next to this Python: pip install mypy-protobuf")
    well_known = resources.files("grpc_tools") / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{PROTOS}",
        f"-I{well_known}",
        f"--plugin=protoc-gen-mypy_grpc={plugin}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        f"--mypy_grpc_out={out}",
        str(PROTOS / SOURCE),
    ]
    if protoc.main(args) != 0:
        sys.exit(f"protoc failed on {SOURCE}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=PROTOS, help="output root (default: protos/)")
    generate(parser.parse_args().out)


if __name__ == "__main__":
    main()
