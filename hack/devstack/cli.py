"""`devstack up|down|status|node`: the local stack from the command line (used by the Makefile)."""

from __future__ import annotations

import argparse
import sys
import time

from .nodeagent.nodes import POOL_LABEL, NodeSpec, capacity, parse_taint
from .stack import Stack


def _node_spec(args: argparse.Namespace) -> NodeSpec:
    labels = {POOL_LABEL: args.pool, "node.kubernetes.io/instance-type": "process-node"}
    for kv in args.label:
        key, sep, value = kv.partition("=")
        if not sep:
            raise SystemExit(f"--label {kv!r}: expected key=value")
        labels[key] = value
    if args.gpus:
        labels.setdefault("nvidia.com/gpu.present", "true")
    try:
        taints = [parse_taint(t) for t in args.taint]
    except ValueError as e:
        raise SystemExit(str(e)) from None
    return NodeSpec(name=args.name, labels=labels, taints=taints,
                    capacity=capacity(args.cpu, args.memory, args.gpus))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="devstack", description="The local Kubernetes + S3 stack.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="start everything (idempotent) and write .devstack/env")
    up.add_argument("--no-operator", action="store_true")
    up.add_argument("--no-api", action="store_true")
    sub.add_parser("down", help="stop everything; no process is left behind")
    sub.add_parser("status", help="which processes run")
    node = sub.add_parser("node", help="add or remove extra process nodes (e.g. a second CPU node to drain to)")
    nsub = node.add_subparsers(dest="node_cmd", required=True)
    add = nsub.add_parser("add", help="start one more process node, Ready when this returns")
    add.add_argument("name")
    add.add_argument("--pool", default="cpu", help="its kubeffmpeg.io/pool label (default cpu)")
    add.add_argument("--label", action="append", default=[], metavar="KEY=VALUE")
    add.add_argument("--taint", action="append", default=[], metavar="KEY[=VALUE]:EFFECT")
    add.add_argument("--cpu", help="CPU capacity = allocatable (default DEVSTACK_NODE_CPU or 8)")
    add.add_argument("--memory", default="16Gi")
    add.add_argument("--gpus", type=int, default=0, help="nvidia.com/gpu capacity")
    rm = nsub.add_parser("remove", help="stop an added node; its pods are deleted with the Node")
    rm.add_argument("name")
    nsub.add_parser("list", help="the nodes added with `node add`")
    args = ap.parse_args(argv)
    stack = Stack()
    if args.cmd == "node":
        try:
            if args.node_cmd == "add":
                stack.add_node(_node_spec(args))
                print(f"node {args.name} Ready")
            elif args.node_cmd == "remove":
                stack.remove_node(args.name)
                print(f"node {args.name} removed")
            else:
                print("\n".join(stack.added_nodes()))
        except RuntimeError as e:
            print(f"devstack: {e}", file=sys.stderr)
            return 1
        return 0
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
