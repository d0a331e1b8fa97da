"""One sidecar per database: a second `durable sidecar` on the same SQLite file exits at once
with a message naming the first one (its PID and address); after `kill -9` of the first, a new
one starts on the file straight away (the OS released the lock with the process)."""

import subprocess

from conftest import Sidecar, sidecar_binary


def test_a_second_sidecar_on_one_file_is_refused_and_kill9_frees_the_file(tmp_path):
    db = tmp_path / "one.db"
    first = Sidecar(db).start()
    try:
        second = subprocess.run(
            [sidecar_binary(), "sidecar", "--port", "0", "--db", str(db)],
            capture_output=True, text=True, timeout=30,
        )
        assert second.returncode != 0
        assert f"pid {first.proc.pid}, listening on http://{first.address}" in second.stderr, second.stderr
        assert f"DURABLE_SIDECAR=http://{first.address}" in second.stderr, second.stderr
    finally:
        first.kill9()
    again = Sidecar(db).start()
    again.stop()
