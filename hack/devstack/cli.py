"""`devstack up|down|status|env`: the local stack from the command line (used by the Makefile)."""

from __future__ import annotations

import argparse
import sys
import time

from .stack import Stack


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="devstack", description="The local Kubernetes + S3 stack.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="start everything (idempotent) and write .devstack/env")
    up.add_argument("--no-operator", action="store_true")
    up.add_argument("--no-api", action="store_true")
    sub.add_parser("down", help="stop everything; no process is left behind")
    sub.add_parser("status", help="which processes run")
    args = ap.parse_args(argv)
    stack = Stack()
    if args.cmd == "up":
        t0 = time.monotonic()
        info = stack.up(with_operator=not args.no_operator, with_api=not args.no_api)
        print(f"local stack up in {time.monotonic() - t0:.1f}s; namespace {info.namespace}")
        print(f"  source {stack.env_file}")
        return 0
    if args.cmd == "down":
        stack.down()
        print("local stack stopped")
        return 0
    for name in stack.procs.names():
        print(f"{name:26} {'running' if stack.procs.running(name) else 'stopped'}")
    return 0 if stack.is_up() else 1


if __name__ == "__main__":
    sys.exit(main())
