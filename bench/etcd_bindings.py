"""Python bindings for etcd's gRPC API, compiled here from the .proto files Debian ships.

`make bench-peers` installs etcd-server and golang-etcd-server-dev (the source, protos
included). The protos' gogoproto and HTTP-gateway options are Go-only decoration and are
stripped before compiling; the wire format is unchanged.
"""

from __future__ import annotations

import re
import sys
import tempfile
from importlib import resources
from pathlib import Path
from types import ModuleType

from grpc_tools import protoc

SOURCE = Path("/usr/share/gocode/src/go.etcd.io/etcd")
PROTOS = {
    "etcd/etcdserver/etcdserverpb/rpc.proto": "etcdserver/etcdserverpb/rpc.proto",
    "etcd/mvcc/mvccpb/kv.proto": "mvcc/mvccpb/kv.proto",
    "etcd/auth/authpb/auth.proto": "auth/authpb/auth.proto",
}
INSTALL = "apt-get install etcd-server golang-etcd-server-dev (or: make bench-peers)"


def available() -> bool:
    return all((SOURCE / path).exists() for path in PROTOS.values())


def _strip(text: str) -> str:
    text = re.sub(r'import "(gogoproto/gogo|google/api/annotations)\.proto";\n', "", text)
    text = re.sub(r"option \(gogoproto\.[^;]*;\n", "", text)
    text = re.sub(r"\s*\[\(gogoproto\.[^\]]*\]", "", text)
    return re.sub(r"option \(google\.api\.http\) = \{.*?\};", "", text, flags=re.S)


def load() -> tuple[ModuleType, ModuleType]:
    """(rpc_pb2, rpc_pb2_grpc), compiled into a temporary folder and imported."""
    out = Path(tempfile.mkdtemp(prefix="etcd-bindings-"))
    for name, path in PROTOS.items():
        target = out / "src" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(_strip((SOURCE / path).read_text()))
    well_known = resources.files("grpc_tools") / "_proto"
    status = protoc.main(
        [
            "protoc",
            f"-I{out / 'src'}",
            f"-I{well_known}",
            f"--python_out={out}",
            f"--grpc_python_out={out}",
            *PROTOS,
        ]
    )
    if status != 0:
        raise RuntimeError("protoc failed on etcd's protos")
    sys.path.insert(0, str(out))
    from etcd.etcdserver.etcdserverpb import rpc_pb2, rpc_pb2_grpc

    return rpc_pb2, rpc_pb2_grpc
