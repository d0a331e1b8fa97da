"""Connections the sidecar cannot take: out of file descriptors, it logs why, does not spin,
and keeps serving the clients it has.

Run: cargo build --bin durable && .venv/bin/python -m pytest tests/python/test_connections.py -q
"""

import resource
import socket
import subprocess
import time

from durabletask import client

from conftest import free_port, sidecar_binary

FD_LIMIT = 64


def cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100  # utime + stime, in clock ticks


def test_out_of_file_descriptors_keeps_serving_connected_clients(tmp_path):
    port = free_port()
    limit = lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))
    proc = subprocess.Popen([sidecar_binary(), "sidecar", "--port", str(port), "--in-memory",
                             "--max-connections", "1000"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=limit)
    sockets = []
    try:
        assert "listening on" in proc.stdout.readline()
        c = client.TaskHubGrpcClient(host_address=f"127.0.0.1:{port}")
        assert c.get_orchestration_state("nobody") is None  # connected and served
        # Past the sidecar's limit, connections wait in the listen backlog until it fills.
        while len(sockets) < 1000:
            try:
                sockets.append(socket.create_connection(("127.0.0.1", port), timeout=0.5))
            except OSError:
                break
        assert len(sockets) > FD_LIMIT
        time.sleep(0.5)
        before = cpu_seconds(proc.pid)
        time.sleep(2)
        spent = cpu_seconds(proc.pid) - before
        assert spent < 0.5, f"the sidecar spun: {spent:.2f} s of CPU in 2 s while out of descriptors"
        # The connected client is still served.
        assert c.get_orchestration_state("nobody") is None
        # Once descriptors free up, new clients connect again.
        for s in sockets:
            s.close()
        sockets.clear()
        time.sleep(0.5)
        fresh = client.TaskHubGrpcClient(host_address=f"127.0.0.1:{port}")
        assert fresh.get_orchestration_state("nobody") is None
    finally:
        for s in sockets:
            s.close()
        proc.terminate()
        _, stderr = proc.communicate(timeout=10)
    assert "out of file descriptors" in stderr, stderr


def test_requests_that_do_not_decode_are_invalid_arguments():
    import grpc
    from conftest import Sidecar

    sidecar = Sidecar(None).start()
    try:
        with grpc.insecure_channel(sidecar.address) as channel:
            start = channel.unary_unary("/TaskHubSidecarService/StartInstance")
            try:
                start(b"\xff\xff\xff\xff", timeout=10)
                raise AssertionError("a malformed request must be refused")
            except grpc.RpcError as e:
                assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e
                assert "decode" in e.details(), e.details()
    finally:
        sidecar.stop()
