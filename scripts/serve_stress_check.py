#!/usr/bin/env python3
"""Clients that disconnect mid-transfer, then 32 concurrent downloads, against `mrepo serve`
(run by Tests/CLITests/ServeHubTests.swift; standard library only, 127.0.0.1 only).

argv: URL PATH EXPECTED_SHA256 SERVER_PID MREPO_BINARY SERVED_REPO [PEAK_MIB]
Checks: every download is complete and hashes to the file's SHA-256; the server's peak resident
memory stays under PEAK_MIB (default 512); afterwards `mrepo gc` in the served repository finishes, which it can
only do once every transfer, the broken ones included, has released the repository's read lock.
"""
import hashlib
import http.client
import socket
import subprocess
import sys
import threading

url, path, expected, pid, mrepo, served = sys.argv[1:7]
peak_limit_mib = int(sys.argv[7]) if len(sys.argv) > 7 else 512
host, port = url.split("//")[1].split(":")
port = int(port)

# Clients that read a little and vanish: a plain close, and a reset (SO_LINGER 0).
for abrupt in (False, True) * 4:
    s = socket.create_connection((host, port), timeout=60)
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
    got = 0
    while got < (1 << 20):
        chunk = s.recv(65536)
        if not chunk:
            break
        got += len(chunk)
    if abrupt:
        import struct
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()

results = []
lock = threading.Lock()


def download():
    conn = http.client.HTTPConnection(host, port, timeout=600)
    conn.request("GET", path)
    response = conn.getresponse()
    h = hashlib.sha256()
    n = 0
    while True:
        block = response.read(1 << 16)
        if not block:
            break
        h.update(block)
        n += len(block)
    conn.close()
    with lock:
        results.append((response.status, h.hexdigest(), n))


threads = [threading.Thread(target=download) for _ in range(32)]
for t in threads:
    t.start()
for t in threads:
    t.join()
assert len(results) == 32, results
bad = [r for r in results if r[0] != 200 or r[1] != expected]
assert not bad, f"{len(bad)} of 32 downloads were wrong: {bad[:3]}"

peak_kib = 0
for line in open(f"/proc/{pid}/status"):
    if line.startswith("VmHWM:"):
        peak_kib = int(line.split()[1])
assert 0 < peak_kib < peak_limit_mib * 1024, f"server peak RSS {peak_kib} KiB, the bound is {peak_limit_mib} MiB"

gc = subprocess.run([mrepo, "gc"], cwd=served, timeout=600, capture_output=True, text=True)
assert gc.returncode == 0, gc.stderr
print(f"ok: 32 downloads of {results[0][2]} bytes, server peak RSS {peak_kib // 1024} MiB")
