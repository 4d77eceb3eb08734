"""What the CLI reads for labels and batches: `k=v` and `k-` arguments, and apply files.

kubectl's habits: `--label k=v` sets, `k-` removes, and a batch file is a JSON array of
operations in proto3 JSON form, as `buf curl` and every gRPC JSON gateway write them.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from typing import Any

from google.protobuf import json_format
from workerstate.v1 import workerstate_pb2 as pb


def label_pair(text: str) -> tuple[str, str]:
    """`KEY=VALUE` (the value may be empty), for `create --label`."""
    key, equals, value = text.partition("=")
    if not equals or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def edited(labels: Mapping[str, str], edits: Sequence[str]) -> dict[str, str]:
    """`labels` after kubectl-style edits: `k=v` sets k, `k-` removes it."""
    result = dict(labels)
    for edit in edits:
        if "=" in edit:
            key, value = label_pair(edit)
            result[key] = value
        elif edit.endswith("-") and len(edit) > 1:
            result.pop(edit[:-1], None)
        else:
            raise argparse.ArgumentTypeError(
                f"expected KEY=VALUE to set a label or KEY- to remove one, got {edit!r}"
            )
    return result


def operations(text: str, source: str) -> list[pb.Operation]:
    """The operations of a batch file; ValueError says what is wrong, and where."""
    try:
        data: Any = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{source} is not JSON: {e}") from None
    if not isinstance(data, list):
        raise ValueError(
            f"{source} must hold a JSON array of operations, such as "
            '[{"create": {"task_id": "t-1", "branch": "b", "worktree": "/w"}}]'
        )
    parsed = []
    for index, item in enumerate(data):
        try:
            parsed.append(json_format.ParseDict(item, pb.Operation()))
        except json_format.ParseError as e:
            raise ValueError(f"{source}: operation {index}: {e}") from None
    return parsed


def labels_text(labels: Mapping[str, str]) -> str:
    """`k=v` pairs sorted by key and joined with `,` (as the board's data-labels)."""
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
