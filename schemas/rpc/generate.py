"""Regenerate the gRPC Python stubs from gateway.proto (run: python -m schemas.rpc.generate)."""

from __future__ import annotations

import sys
from importlib.resources import files
from pathlib import Path

from grpc_tools import protoc

REPO_ROOT = Path(__file__).resolve().parents[2]
PROTO = "schemas/rpc/gateway.proto"


def generate(out_dir: Path = REPO_ROOT) -> None:
    """Write gateway_pb2.py, gateway_pb2.pyi and gateway_pb2_grpc.py under out_dir/schemas/rpc/."""
    (out_dir / "schemas" / "rpc").mkdir(parents=True, exist_ok=True)
    well_known = str(files("grpc_tools") / "_proto")
    code = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{REPO_ROOT}",
            f"-I{well_known}",
            f"--python_out={out_dir}",
            f"--pyi_out={out_dir}",
            f"--grpc_python_out={out_dir}",
            str(REPO_ROOT / PROTO),
        ]
    )
    if code != 0:
        raise RuntimeError(f"protoc failed with exit code {code}")


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else REPO_ROOT)
