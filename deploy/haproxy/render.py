#!/usr/bin/env python3
"""Writes deploy/haproxy/yunmo.cfg with its replica list (and optionally its listen addresses) replaced.

Everything else in the shipped file is kept as it is, so what runs is the shipped configuration:
tests/clients/test_routing.py and bench/routing.py use this to point it at replicas on ephemeral ports.

    deploy/haproxy/render.py --server 10.0.0.11:8080:8081 --server 10.0.0.12:8080:8081 > haproxy.cfg
    deploy/haproxy/render.py --server 127.0.0.1:9080:9081 ... --http-bind 127.0.0.1:8080 --round-robin

Each --server is HOST:HTTP_PORT:GRPC_PORT of one replica; they are named yunmo1, yunmo2, … in order
(the order fixes each replica's place on the hash ring: keep it the same on every HAProxy instance).
--round-robin swaps the model hash for `balance roundrobin` (the benchmark's baseline).
"""
import argparse
import os
import re
import sys

SHIPPED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "yunmo.cfg")
HASH_BALANCE = "balance hash var(txn.yunmo_model)"


def server_lines(backend, servers):
    """The `server` lines of `backend` (yunmo_http or yunmo_grpc) for [(host, http_port, grpc_port)]."""
    lines = []
    for index, (host, http_port, grpc_port) in enumerate(servers, start=1):
        if backend == "yunmo_http":
            lines.append(f"    server yunmo{index} {host}:{http_port}")
        else:
            lines.append(f"    server yunmo{index} {host}:{grpc_port} proto h2 no-check track yunmo_http/yunmo{index}")
    return lines


def render(servers, binds=None, round_robin=False, text=None):
    """The shipped configuration with `servers` ([(host, http_port, grpc_port)]) as the replicas.

    `binds` maps a frontend name (yunmo_http, yunmo_grpc, stats) to the address its `bind` line listens on
    (the options after the address, such as `proto h2`, are kept).
    """
    if text is None:
        with open(SHIPPED) as f:
            text = f.read()
    binds = binds or {}
    out, section, replaced, swapped = [], None, set(), 0
    for line in text.splitlines():
        header = re.match(r"^(global|defaults|frontend|backend|listen)\b\s*(\S*)", line)
        if header:
            section = header.group(2) or header.group(1)
        stripped = line.strip()
        if section in ("yunmo_http", "yunmo_grpc") and stripped.startswith("server "):
            if section not in replaced:
                out.extend(server_lines(section, servers))
                replaced.add(section)
            continue
        if stripped.startswith("bind ") and section in binds:
            words = stripped.split()
            line = "    " + " ".join(["bind", binds[section]] + words[2:])
        if round_robin and stripped == HASH_BALANCE:
            line, swapped = "    balance roundrobin", swapped + 1
        out.append(line)
    if replaced != {"yunmo_http", "yunmo_grpc"}:
        raise ValueError(f"the configuration has no server lines in {sorted({'yunmo_http', 'yunmo_grpc'} - replaced)}")
    if round_robin and swapped != 2:
        raise ValueError(f"expected `{HASH_BALANCE}` in both backends, found it {swapped} times")
    return "\n".join(out) + "\n"


def parse_server(value):
    host, http_port, grpc_port = value.rsplit(":", 2)
    return host, int(http_port), int(grpc_port)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", action="append", required=True, type=parse_server, help="HOST:HTTP_PORT:GRPC_PORT")
    parser.add_argument("--http-bind", help="address of the REST frontend (default :8080)")
    parser.add_argument("--grpc-bind", help="address of the gRPC frontend (default :8081)")
    parser.add_argument("--stats-bind", help="address of HAProxy's stats and metrics (default 127.0.0.1:8404)")
    parser.add_argument("--round-robin", action="store_true", help="round robin instead of the model hash")
    parser.add_argument("--config", default=SHIPPED, help="the configuration to start from")
    args = parser.parse_args()
    binds = {name: value for name, value in (("yunmo_http", args.http_bind), ("yunmo_grpc", args.grpc_bind), ("stats", args.stats_bind)) if value}
    with open(args.config) as f:
        sys.stdout.write(render(args.server, binds, args.round_robin, f.read()))


if __name__ == "__main__":
    main()
