"""Write the OpenAPI document: `python -m ffmpeg_api.openapi [path]` (default api/openapi.json)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from .app import spec_app

DEFAULT_PATH = Path(__file__).resolve().parent.parent / "openapi.json"


def document() -> dict[str, Any]:
    return spec_app().openapi()


def render() -> str:
    return json.dumps(document(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0]) if args else DEFAULT_PATH
    path.write_text(render())
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
