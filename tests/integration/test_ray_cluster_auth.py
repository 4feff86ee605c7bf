"""The embedded Ray cluster (`pipelines.runtime.ray_cluster.connect()`) keeps token auth on.

Started the way `shg run` / `shg prepare` start it, in a subprocess without the suite's
`RAY_AUTH_MODE=disabled`: the test lists the TCP ports its process tree listens on (from /proc),
shows they are not all loopback (Ray 2.60 binds its gRPC servers to every interface), and that
a client without the token is refused there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Runs in the subprocess: start the embedded cluster, list the listening sockets of this
# process and its descendants (/proc/net/tcp{,6} state 0A = LISTEN, matched by socket inode).
PROBE = r'''
import json, os, sys
from pipelines.runtime.ray_cluster import connect

connect(num_cpus=1)
import ray

ray.get(ray.remote(lambda: 1).remote())


def descendants(root):
    parent = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                parent[int(pid)] = int(f.read().rsplit(")", 1)[1].split()[1])
        except OSError:
            pass
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(child for child, ppid in parent.items() if ppid == pid)
    return tree


def socket_inodes(pids):
    inodes = set()
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
    return inodes


def address(hex_ip):
    raw = bytes.fromhex(hex_ip)
    if len(raw) == 4:
        return ".".join(str(b) for b in raw[::-1])
    words = [raw[i:i + 4][::-1].hex() for i in range(0, 16, 4)]
    import ipaddress
    return str(ipaddress.IPv6Address(bytes.fromhex("".join(words))))


inodes = socket_inodes(descendants(os.getpid()))
listening = []
for table in ("tcp", "tcp6"):
    with open(f"/proc/net/{table}") as f:
        next(f)
        for line in f:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:
                ip, port = fields[1].split(":")
                listening.append([address(ip), int(port, 16)])
print("PROBE " + json.dumps({
    "auth_mode": os.environ.get("RAY_AUTH_MODE"),
    "gcs_address": ray.get_runtime_context().gcs_address,
    "listening": sorted(listening),
}), flush=True)
# Hold the cluster until the test has tried its unauthenticated client.
sys.stdin.readline()
ray.shutdown()
'''

# A client with auth disabled and no token, asking the GCS for a key.
UNAUTHENTICATED_CLIENT = r'''
import sys
from ray._raylet import GcsClient
try:
    GcsClient(address=sys.argv[1]).internal_kv_get(b"probe", None, timeout=20)
except Exception as exc:
    print("REFUSED", type(exc).__name__, exc)
else:
    print("SERVED")
'''


def _clean_env(home: Path, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(HOME=str(home), PYTHONPATH=str(ROOT), RAY_USAGE_STATS_ENABLED="0", **extra)
    return env


@pytest.mark.slow
def test_embedded_cluster_runs_with_token_auth(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-c", PROBE], cwd=ROOT, env=_clean_env(home), text=True,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("PROBE "):
                break
        else:
            pytest.fail("the embedded cluster did not start:\n" + "".join(lines[-30:]))
        probe = json.loads(line[len("PROBE "):])
        client = subprocess.run(
            [sys.executable, "-c", UNAUTHENTICATED_CLIENT, probe["gcs_address"]], cwd=ROOT, text=True,
            env=_clean_env(tmp_path, RAY_AUTH_MODE="disabled"), capture_output=True, timeout=120,
        )
    finally:
        proc.stdin.close()
        proc.wait(120)

    assert probe["auth_mode"] == "token"
    assert (home / ".ray" / "auth_token").read_text().strip()  # Ray made the cluster's token
    hosts = {host for host, _ in probe["listening"]}
    gcs_port = int(probe["gcs_address"].rsplit(":", 1)[1])
    # What it listens on, proven: the GCS port on every interface (so auth must be on) ...
    assert [h for h, p in probe["listening"] if p == gcs_port] and hosts - {"127.0.0.1", "::1"}
    assert 8265 not in {p for _, p in probe["listening"]}  # ... and no dashboard / Jobs API
    # ... and there a client without the token is turned away.
    assert "REFUSED" in client.stdout and "SERVED" not in client.stdout, client.stdout + client.stderr
