"""`python -m bench.cleanup`: delete every FFmpegJob a benchmark left behind (any run), e.g.
after the stack went away in the middle of a run."""

from __future__ import annotations

from .common import BENCH_LABEL, api_client, delete_run, list_ffj, stack_env


def main() -> None:
    env = stack_env()
    api = api_client(env)
    ns = env["FFMPEG_NAMESPACE"]
    runs = {o["metadata"]["labels"][BENCH_LABEL] for o in list_ffj(api, ns, BENCH_LABEL)}
    for rid in sorted(runs):
        print(f"run {rid}: deleted in {delete_run(api, ns, rid):.1f}s")


if __name__ == "__main__":
    main()
