"""Writes the JSON Schema of every event to schemas/json/ (run: python -m schemas.jsonschema)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from schemas.events import EVENT_TYPES, DeadLetter

OUT = Path(__file__).resolve().parent / "json"


def render() -> dict[str, str]:
    """File name -> JSON text, for every event contract and the dead-letter record."""
    files = {}
    for model in (*EVENT_TYPES, DeadLetter):
        version = model.model_fields["schema_version"].default if "schema_version" in model.model_fields else 1
        schema = model.model_json_schema(mode="serialization")
        schema["$id"] = f"https://labelmesh.dev/schemas/{model.TOPIC}.v{version}.json"
        files[f"{model.TOPIC}.v{version}.json"] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return files


def main(out: Path = OUT) -> None:
    out.mkdir(exist_ok=True)
    for name, text in render().items():
        (out / name).write_text(text)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT)
