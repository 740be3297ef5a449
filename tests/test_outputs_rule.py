"""``--out`` never destroys what ppcfin did not write (issue #14, "data loss").

Each test reproduces one way the user's files were lost before: a folder of their own files, the
case's own folder, a regular file, a FIFO (standing in for a device: tests never touch real
devices), a symbolic link, ``report`` flattening sub-folders and links; then the killed-run
leftovers (stale staging folders, outputs moved aside) and workers that outlive a killed parent.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml
from conftest import MINIMAL_CASE
from fault_cases import descendants, still_running

from optimizer.door.atomic import staged_directory, staged_files
from optimizer.door.cli import main
from optimizer.door.outputs import (
    MANIFEST_NAME,
    STAGE_MARKER,
    OutputRefused,
    check_output_folder,
    clean_stale,
    read_manifest,
    write_manifest,
)

N = "300"


@pytest.fixture
def case_file(tmp_path: Path) -> Path:
    folder = tmp_path / "mycase"
    folder.mkdir()
    path = folder / "case.yaml"
    path.write_text(yaml.safe_dump(MINIMAL_CASE, sort_keys=False), encoding="utf-8")
    return path


def tree(folder: Path) -> dict[str, bytes | str]:
    """Every entry below ``folder``: file bytes, link targets, folders marked."""
    out: dict[str, bytes | str] = {}
    for path in sorted(folder.rglob("*")):
        rel = str(path.relative_to(folder))
        if path.is_symlink():
            out[rel] = f"-> {os.readlink(path)}"
        elif path.is_dir():
            out[rel] = "<dir>"
        else:
            out[rel] = path.read_bytes()
    return out


def optimize_into(case_file: Path, out: Path, *extra: str) -> int:
    return main(["optimize", str(case_file), "-n", N, "--out", str(out), *extra])


def test_a_folder_of_the_users_files_is_refused_and_left_whole(case_file, tmp_path, capsys):
    users = tmp_path / "d"
    users.mkdir()
    (users / "thesis.docx").write_bytes(b"four years of work")
    assert optimize_into(case_file, users) == 2
    err = capsys.readouterr().err
    assert "thesis.docx" in err and "--force" in err and "Traceback" not in err
    assert tree(users) == {"thesis.docx": b"four years of work"}


def test_the_refusal_comes_before_any_simulation(case_file, tmp_path, monkeypatch, capsys):
    users = tmp_path / "d"
    users.mkdir()
    (users / "notes.txt").write_text("mine", encoding="utf-8")

    def must_not_run(*args, **kwargs):
        raise AssertionError("simulated before checking --out")

    monkeypatch.setattr("models.simulate", must_not_run)
    monkeypatch.setattr("optimizer.door.run.run_case", must_not_run)
    for command in ("optimize", "run", "frontier", "sensitivity", "stress"):
        assert main([command, str(case_file), "-n", N, "--out", str(users)]) == 2, command
    assert tree(users) == {"notes.txt": b"mine"}


def test_the_cases_own_folder_is_refused_even_with_force(case_file, capsys):
    before = tree(case_file.parent)
    assert optimize_into(case_file, case_file.parent, "--force") == 2
    assert "holds" in capsys.readouterr().err
    assert tree(case_file.parent) == before


def test_the_current_folder_and_the_home_folder_are_refused_even_with_force(
    case_file, tmp_path, monkeypatch, capsys
):
    work = tmp_path / "work"
    work.mkdir()
    (work / "data.csv").write_text("a,b\n", encoding="utf-8")
    monkeypatch.chdir(work)
    assert optimize_into(case_file, Path("."), "--force") == 2
    assert "the folder this command runs in" in capsys.readouterr().err
    monkeypatch.setenv("HOME", str(work))
    assert optimize_into(case_file, work, "--force") == 2
    assert tree(work) == {"data.csv": b"a,b\n"}


def test_a_regular_file_is_refused_with_exit_2_and_kept(case_file, tmp_path, capsys):
    target = tmp_path / "results"
    target.write_bytes(b"a user's file")
    for extra in ((), ("--force",)):
        assert optimize_into(case_file, target, *extra) == 2
        assert "is a file" in capsys.readouterr().err
    assert target.read_bytes() == b"a user's file"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_a_fifo_is_refused_and_stays_a_fifo(case_file, tmp_path, capsys):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    assert optimize_into(case_file, fifo, "--force") == 2
    assert "FIFO" in capsys.readouterr().err
    assert fifo.is_fifo()


@pytest.mark.parametrize("points_to", ["folder", "file", "nothing"])
def test_a_symbolic_link_is_refused_whatever_it_points_to(case_file, tmp_path, points_to, capsys):
    real = tmp_path / "real"
    if points_to == "folder":
        real.mkdir()
        (real / "keep.txt").write_text("keep", encoding="utf-8")
    elif points_to == "file":
        real.write_text("keep", encoding="utf-8")
    link = tmp_path / "link"
    link.symlink_to(real)
    assert optimize_into(case_file, link, "--force") == 2
    assert "symbolic link" in capsys.readouterr().err
    assert link.is_symlink() and os.readlink(link) == str(real)
    if points_to == "folder":
        assert tree(real) == {"keep.txt": b"keep"}


def test_a_folder_ppcfin_wrote_is_replaced_and_carries_its_manifest(case_file, tmp_path):
    out = tmp_path / "out"
    assert optimize_into(case_file, out) == 0
    manifest = read_manifest(out)
    assert manifest is not None and manifest["command"] == "optimize"
    assert sorted(manifest["files"]) == ["allocation.csv", "out_of_sample.json", "result.json"]
    assert sorted(p.name for p in out.iterdir()) == sorted([*manifest["files"], MANIFEST_NAME])
    assert optimize_into(case_file, out, "--seed", "8") == 0  # ppcfin's own: replaced
    assert json.loads((out / "result.json").read_text())  # the new run's


def test_a_file_added_to_a_ppcfin_folder_makes_it_the_users_again(case_file, tmp_path, capsys):
    out = tmp_path / "out"
    assert optimize_into(case_file, out) == 0
    (out / "notes.txt").write_text("my reading of the run", encoding="utf-8")
    before = tree(out)
    assert optimize_into(case_file, out) == 2
    assert "notes.txt" in capsys.readouterr().err
    assert tree(out) == before
    assert optimize_into(case_file, out, "--force") == 0  # asked for explicitly
    assert not (out / "notes.txt").exists()


def test_an_empty_folder_is_used(case_file, tmp_path):
    out = tmp_path / "empty"
    out.mkdir()
    assert optimize_into(case_file, out) == 0
    assert (out / "result.json").is_file()


def test_a_forged_manifest_does_not_make_a_folder_ppcfins(tmp_path):
    folder = tmp_path / "d"
    folder.mkdir()
    (folder / "thesis.docx").write_bytes(b"x")
    (folder / MANIFEST_NAME).write_text(json.dumps({"files": ["thesis.docx"]}), encoding="utf-8")
    with pytest.raises(OutputRefused, match="no ppcfin manifest"):
        check_output_folder(folder, command="optimize")
    (folder / MANIFEST_NAME).write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(OutputRefused):
        check_output_folder(folder, command="optimize")


def test_simulate_out_refuses_a_file_it_did_not_write(case_file, tmp_path, capsys):
    target = tmp_path / "scen.npz"
    target.write_bytes(b"not a scenario set")
    assert main(["simulate", str(case_file), "-n", N, "--out", str(target)]) == 2
    assert "did not write" in capsys.readouterr().err
    assert target.read_bytes() == b"not a scenario set"
    fifo = tmp_path / "scen.parquet"
    os.mkfifo(fifo)
    assert main(["simulate", str(case_file), "-n", N, "--out", str(fifo)]) == 2
    assert fifo.is_fifo()
    good = tmp_path / "mine.npz"
    assert main(["simulate", str(case_file), "-n", N, "--out", str(good)]) == 0
    assert main(["simulate", str(case_file), "-n", N, "--seed", "9", "--out", str(good)]) == 0


def test_report_keeps_everything_it_did_not_write(tmp_path):
    folder = tmp_path / "run"
    with staged_directory(folder, command="run") as stage:
        (stage / "result.json").write_text("{}", encoding="utf-8")
        (stage / "report.html").write_text("old", encoding="utf-8")
    (folder / "sub").mkdir()
    (folder / "sub" / "keep.txt").write_text("keep", encoding="utf-8")
    (folder / "link").symlink_to("sub/keep.txt")
    (folder / "notes.txt").write_text("mine", encoding="utf-8")
    with staged_files(folder, command="report") as stage:
        (stage / "report.html").write_text("new", encoding="utf-8")
        (stage / "report.xlsx").write_bytes(b"xlsx")
    after = tree(folder)
    assert after["report.html"] == b"new" and after["report.xlsx"] == b"xlsx"
    assert after["sub"] == "<dir>" and after["sub/keep.txt"] == b"keep"
    assert after["link"] == "-> sub/keep.txt" and after["notes.txt"] == b"mine"
    assert after["result.json"] == b"{}"
    assert set(read_manifest(folder)["files"]) == {"result.json", "report.html", "report.xlsx"}
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_report_refuses_to_overwrite_a_report_file_it_did_not_write(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "report.html").write_text("the user's own page", encoding="utf-8")
    with pytest.raises(OutputRefused, match=r"report\.html"):
        check_output_folder(folder, command="report", replacing=["report.html"])
    (folder / "report.pdf").mkdir()
    with pytest.raises(OutputRefused, match="is a folder"):
        check_output_folder(folder, command="report", force=True, replacing=["report.pdf"])


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_killed_runs_staging_folder_is_removed_by_the_next_run(tmp_path):
    target = tmp_path / "out"
    stale = tmp_path / ".out.stage-abc123"
    stale.mkdir()
    (stale / STAGE_MARKER).write_text(str(dead_pid()), encoding="utf-8")
    (stale / "result.json").write_text("half", encoding="utf-8")
    live = tmp_path / ".out.stage-live"
    live.mkdir()
    (live / STAGE_MARKER).write_text(str(os.getpid()), encoding="utf-8")
    foreign = tmp_path / ".out.stage-users"  # no marker: not ppcfin's, never touched
    foreign.mkdir()
    with staged_directory(target, command="optimize") as stage:
        (stage / "result.json").write_text("{}", encoding="utf-8")
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [".out.stage-live", ".out.stage-users", "out"]


def test_outputs_moved_aside_by_a_killed_swap_come_back(tmp_path):
    target = tmp_path / "out"
    aside = tmp_path / f".out.old-{dead_pid()}-xyz"
    aside.mkdir()
    (aside / "result.json").write_text("previous run", encoding="utf-8")
    write_manifest(aside, "run", ["result.json"])
    clean_stale(target)  # killed between the two renames: nothing under the name
    assert (target / "result.json").read_text() == "previous run"
    again = tmp_path / f".out.old-{dead_pid()}-abc"
    again.mkdir()
    write_manifest(again, "run", [])
    clean_stale(target)  # the swap had completed: the moved-aside copy is gone
    assert not again.exists() and (target / "result.json").is_file()


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs /proc")
def test_loky_workers_exit_when_their_parent_is_killed(tmp_path):
    script = tmp_path / "parent.py"
    script.write_text(
        textwrap.dedent(
            """
            import time
            from models.workers import Backend, run_in_order

            def slow(i):
                time.sleep(60)
                return i

            list(run_in_order(slow, (), [(i,) for i in range(4)], Backend.loky, 2))
            """
        ),
        encoding="utf-8",
    )
    repo = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(repo)}
    proc = subprocess.Popen([sys.executable, str(script)], env=env, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 60
        workers: dict[int, float] = {}
        while len(workers) < 2:
            assert proc.poll() is None and time.monotonic() < deadline, "no worker started"
            workers = {
                pid: start
                for pid, start in descendants(proc.pid).items()
                if b"loky" in Path(f"/proc/{pid}/cmdline").read_bytes().lower()
            }
            time.sleep(0.2)
        time.sleep(1.0)  # the workers are inside their tasks, watching
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert still_running(workers, grace_s=5.0) == []
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600)])
def test_a_written_file_has_the_mode_the_users_umask_gives(umask, mode, tmp_path):
    """The one atomic writer leaves a file as ``open`` would under the user's umask: shared
    under the usual 022, private under 077 (not mkstemp's private mode, nor a forced 0644)."""
    script = textwrap.dedent(
        f"""
        import os, sys
        os.umask({umask:#o})
        from models.atomic_file import write_atomically
        write_atomically(sys.argv[1], lambda tmp: tmp.write_text("x"))
        """
    )
    target = tmp_path / "out" / "result.json"
    subprocess.run([sys.executable, "-c", script, str(target)], check=True)
    assert target.stat().st_mode & 0o777 == mode
    assert [p.name for p in target.parent.iterdir()] == ["result.json"]
