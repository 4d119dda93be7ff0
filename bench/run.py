"""`python -m bench.run [name ...]`: run the benchmarks (all by default, in this order), each
printing one JSON line and writing bench/results/<name>.json."""

from __future__ import annotations

import importlib
import sys
import traceback

ORDER = ["operator_latency", "worker_overhead", "data_path", "api_latency", "operator_burst", "operator_memory",
         "split_encode", "sse", "queueing"]


def main(argv: list[str] | None = None) -> int:
    names = (sys.argv[1:] if argv is None else argv) or ORDER
    unknown = [n for n in names if n not in ORDER]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(ORDER)}", file=sys.stderr)
        return 2
    failed = []
    for name in names:
        try:
            importlib.import_module(f"bench.{name}").run()
        except Exception:  # one broken benchmark must not hide the others' figures
            traceback.print_exc()
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
