"""What the disk does to acknowledged work: a machine crash (the OS page cache lost), a
read-only database, a full disk.

Method for the machine crash: the sidecar's database lives on an ext4 file system in a
loop-mounted image file. The loop device writes to the image only what the kernel flushed from
that file system's page cache (fsync or writeback), so a copy of the image taken while the
sidecar runs holds exactly what a power cut at that moment would leave on disk. The copy is
mounted (its journal replayed) and a new sidecar opened on it: every start the first sidecar
acknowledged must be there. With `--synchronous normal` the same procedure loses recent
acknowledgements, which shows that the method sees un-fsynced writes.

Needs root (mount, loop devices): skipped otherwise, unless DURABLE_REQUIRE_LOOP_MOUNT is set
(`.ci/run` sets it when it runs as root with loop devices).

Run: cargo build --bin durable && .venv/bin/python -m pytest tests/python/test_disk_faults.py -q
"""

import os
import shutil
import subprocess
import time
from pathlib import Path

import grpc
import pytest
from durabletask import client

from conftest import Sidecar, sidecar_binary

STARTS = 150


def can_loop_mount() -> bool:
    if os.geteuid() != 0 or not shutil.which("mkfs.ext4"):
        return False
    return subprocess.run(["losetup", "-f"], capture_output=True).returncode == 0


if not can_loop_mount():
    if os.environ.get("DURABLE_REQUIRE_LOOP_MOUNT"):
        raise RuntimeError("DURABLE_REQUIRE_LOOP_MOUNT is set but this process cannot loop-mount an ext4 image (needs root, losetup and mkfs.ext4)")
    pytest.skip("needs root to loop-mount an ext4 image", allow_module_level=True)


class Ext4Image:
    """An ext4 file system in an image file, mounted through a loop device."""

    def __init__(self, dir: Path, name: str, size_mib: int = 64):
        self.image = dir / f"{name}.img"
        self.mountpoint = dir / name
        self.mountpoint.mkdir()
        with open(self.image, "wb") as f:
            f.truncate(size_mib * 1024 * 1024)
        subprocess.run(["mkfs.ext4", "-q", "-F", str(self.image)], check=True, capture_output=True)

    @classmethod
    def existing(cls, image: Path, mountpoint: Path) -> "Ext4Image":
        fs = cls.__new__(cls)
        fs.image, fs.mountpoint = image, mountpoint
        mountpoint.mkdir(exist_ok=True)
        return fs

    def mount(self, *options: str) -> Path:
        opts = ",".join(("loop",) + options)
        subprocess.run(["mount", "-o", opts, str(self.image), str(self.mountpoint)], check=True)
        return self.mountpoint

    def unmount(self) -> None:
        subprocess.run(["umount", str(self.mountpoint)], check=False, capture_output=True)


def acknowledged_starts(address: str, prefix: str) -> list[str]:
    """Starts instances one by one (no worker runs them); each id returned was acknowledged."""
    c = client.TaskHubGrpcClient(host_address=address)
    ids = [c.schedule_new_orchestration("never_runs", input=i, instance_id=f"{prefix}-{i}")
           for i in range(STARTS)]
    return ids


def survivors_after_power_cut(tmp_path: Path, synchronous: str) -> tuple[int, int]:
    """(acknowledged, still there) after a simulated power cut right after the last ack."""
    fs = Ext4Image(tmp_path, f"disk-{synchronous}")
    mnt = fs.mount()
    sidecar = Sidecar(mnt / "durable.db", args=("--synchronous", synchronous)).start()
    try:
        # Everything before the starts under test (the new database file and its schema) is
        # flushed, so only their acknowledgements are at stake.
        subprocess.run(["sync"], check=True)
        ids = acknowledged_starts(sidecar.address, synchronous)
        # The power cut: what the loop device has written to the image is what the disk holds.
        snapshot = tmp_path / f"after-cut-{synchronous}.img"
        shutil.copyfile(fs.image, snapshot)
    finally:
        sidecar.kill9()
        fs.unmount()
    after = Ext4Image.existing(snapshot, tmp_path / f"after-cut-{synchronous}")
    mnt = after.mount()
    restarted = Sidecar(mnt / "durable.db").start()
    try:
        c = client.TaskHubGrpcClient(host_address=restarted.address)
        present = sum(c.get_orchestration_state(i) is not None for i in ids)
    finally:
        restarted.stop()
        after.unmount()
    return len(ids), present


def test_acknowledged_starts_survive_a_power_cut(tmp_path):
    acknowledged, present = survivors_after_power_cut(tmp_path, "full")
    assert present == acknowledged, f"{acknowledged - present} of {acknowledged} acknowledged starts lost"


def test_the_method_sees_unsynced_writes(tmp_path):
    # The control: without fsync before the acknowledgement, a power cut loses recent starts.
    acknowledged, present = survivors_after_power_cut(tmp_path, "normal")
    print(f"synchronous=normal: {acknowledged - present} of {acknowledged} acknowledged starts lost")
    assert present < acknowledged


def test_a_read_only_database_fails_at_start(tmp_path):
    fs = Ext4Image(tmp_path, "ro", size_mib=16)
    mnt = fs.mount()
    sidecar = Sidecar(mnt / "durable.db").start()
    sidecar.stop()
    fs.unmount()
    fs.mount("ro")
    try:
        run = subprocess.run([sidecar_binary(), "sidecar", "--port", "0", "--db", str(mnt / "durable.db")],
                             capture_output=True, text=True, timeout=30)
    finally:
        fs.unmount()
    assert run.returncode != 0
    assert "Read-only file system" in run.stderr, run.stderr
    assert "listening" not in run.stdout


def test_a_full_disk_stops_the_sidecar_with_an_error(tmp_path):
    fs = Ext4Image(tmp_path, "small", size_mib=8)
    mnt = fs.mount()
    sidecar = Sidecar(mnt / "durable.db").start()
    try:
        c = client.TaskHubGrpcClient(host_address=sidecar.address)
        payload = "x" * (256 * 1024)
        refused = None
        for i in range(200):
            try:
                c.schedule_new_orchestration("never_runs", input=payload, instance_id=f"big-{i}")
            except grpc.RpcError as e:
                refused = e
                break
        assert refused is not None, "8 MiB should not hold 50 MiB of inputs"
        assert refused.code() == grpc.StatusCode.UNAVAILABLE, refused
        # The process exits non-zero so that a supervisor restarts it.
        code = sidecar.proc.wait(timeout=30)
        assert code != 0
    finally:
        sidecar.stop()
        fs.unmount()
