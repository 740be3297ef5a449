"""Faults injected on purpose: a worker killed mid-simulation or mid-frontier, solvers that fail
or run out of time, an unwritable or full disk, SIGINT/SIGTERM during ``ppcfin run``.

Each fault must end in one of two ways: the run recovers with the very numbers of a clean run,
or it stops with one clear message (exit 1 from the CLI, never a traceback), leaving earlier
outputs byte-identical, no temporary file or folder, and no worker process behind.
"""

from __future__ import annotations

import errno
import importlib
import os
import pathlib
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import default_signals
from cvxpy.error import SolverError
from fault_cases import KillWorker, chunk_starting_at, descendants, still_running
from optimizer_cases import random_case, synthetic_scenarios

from models import load_case, simulate
from models.simulate import CHUNK_SCENARIOS
from models.workers import WorkersLost
from optimizer import SolverFailure, optimize
from optimizer.door.atomic import OutputError, staged_directory, write_text_atomic
from optimizer.door.cli import main
from optimizer.door.outputs import write_manifest

draws_module = importlib.import_module("models.draws")  # where simulate draws its chunks
N_CHUNKED = 2 * CHUNK_SCENARIOS + 1_000  # three chunks: two workers both get one
TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def minimal_case_file(tmp_path_factory) -> Path:
    from conftest import MINIMAL_CASE

    path = tmp_path_factory.mktemp("case") / "minimal.yaml"
    path.write_text(yaml.safe_dump(MINIMAL_CASE, sort_keys=False), encoding="utf-8")
    return path


def hidden_entries(folder: Path) -> list[str]:
    """Staging folders and temporary files are dot-named siblings of what they stand for."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def assert_identical(a, b) -> None:
    for name in ("losses", "probabilities", "factors", "events"):
        assert getattr(a, name).tobytes() == getattr(b, name).tobytes(), name


# --- a loky worker killed during the simulation ----------------------------------------------
def test_a_killed_loky_worker_is_replaced_and_the_numbers_are_identical(
    minimal_case_file, tmp_path, monkeypatch
):
    case = load_case(minimal_case_file)
    clean = simulate(case, N_CHUNKED, seed=11)
    killer = KillWorker(
        draws_module._draw_chunk, tmp_path / "killed", when=chunk_starting_at(CHUNK_SCENARIOS)
    )
    monkeypatch.setattr(draws_module, "_draw_chunk", killer)
    with pytest.warns(RuntimeWarning, match=r"worker process died \(exit SIGKILL.*same numbers"):
        scen = simulate(case, N_CHUNKED, seed=11, n_jobs=2)
    assert (tmp_path / "killed").exists()  # the fault did happen
    assert_identical(clean, scen)


def test_a_worker_that_keeps_dying_stops_ppcfin_simulate_with_exit_1(
    minimal_case_file, tmp_path, monkeypatch, capsys
):
    killer = KillWorker(
        draws_module._draw_chunk,
        tmp_path / "killed",
        when=chunk_starting_at(CHUNK_SCENARIOS),
        always=True,
    )
    monkeypatch.setattr(draws_module, "_draw_chunk", killer)
    out = tmp_path / "out" / "scen.npz"
    args = ["simulate", str(minimal_case_file), "-n", str(N_CHUNKED), "-j", "2", "--out", str(out)]
    with pytest.warns(RuntimeWarning, match="worker process died"):  # the first loss
        code = main(args)
    err = capsys.readouterr().err
    assert code == 1
    assert "Error: a worker process died (exit SIGKILL(-9))" in err
    assert re.search(r"with scenarios [\d,]+ to 33,767 still to compute", err) and "--jobs" in err
    assert "Traceback" not in err
    assert not out.exists() and hidden_entries(tmp_path) == []
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []
    # both pools were torn down: no worker that ran a chunk is left
    workers = killer.workers()
    assert len(workers) >= 2
    assert still_running(workers) == []


def test_worker_loss_is_a_simulation_error_but_not_bad_input():
    from models.errors import SimulationError

    assert issubclass(WorkersLost, SimulationError) and issubclass(WorkersLost, RuntimeError)


# --- a dask worker killed during a simulation and during a frontier ---------------------------
@pytest.fixture(scope="module")
def dask_cluster():
    distributed = pytest.importorskip("dask.distributed")
    import dask

    # one retry per task: a worker killed once is survived, a task that kills twice is lost.
    # The cluster closes a nanny whose worker is still away 15 s after it died
    # (lost-worker-timeout): tests that kill workers in quick succession can catch one
    # mid-restart at that moment, so the module's cluster would lose it for good.
    settings = {
        "distributed.scheduler.allowed-failures": 1,
        "distributed.deploy.lost-worker-timeout": "1 hour",
    }
    with dask.config.set(settings):
        cluster = distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
            dashboard_address=None,
        )  # fmt: skip
        client = distributed.Client(cluster)
        yield cluster, client
        client.close()
        cluster.close()


@pytest.fixture
def two_dask_workers(dask_cluster):
    cluster, client = dask_cluster
    client.wait_for_workers(2, timeout=60)  # a worker killed by an earlier test is back
    return cluster.scheduler_address


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::UserWarning")  # dask: port 8787 in use, leaked semaphores
def test_a_killed_dask_worker_is_replaced_and_the_numbers_are_identical(
    minimal_case_file, tmp_path, monkeypatch, two_dask_workers
):
    case = load_case(minimal_case_file)
    clean = simulate(case, N_CHUNKED, seed=11)
    killer = KillWorker(
        draws_module._draw_chunk, tmp_path / "killed", when=chunk_starting_at(CHUNK_SCENARIOS)
    )
    monkeypatch.setattr(draws_module, "_draw_chunk", killer)
    scen = simulate(case, N_CHUNKED, seed=11, backend="dask", scheduler=two_dask_workers)
    assert (tmp_path / "killed").exists()
    assert_identical(clean, scen)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_a_chunk_that_kills_every_dask_worker_raises_workers_lost(
    minimal_case_file, tmp_path, monkeypatch, two_dask_workers
):
    case = load_case(minimal_case_file)
    killer = KillWorker(
        draws_module._draw_chunk,
        tmp_path / "killed",
        when=chunk_starting_at(CHUNK_SCENARIOS),
        always=True,
    )
    monkeypatch.setattr(draws_module, "_draw_chunk", killer)
    start = time.monotonic()
    with pytest.raises(WorkersLost, match=r"dask gave up on scenarios 16,384 to 33,767"):
        simulate(case, N_CHUNKED, seed=11, backend="dask", scheduler=two_dask_workers)
    assert time.monotonic() - start < 120


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_inputs_lost_with_the_only_dask_worker_are_sent_again_with_identical_numbers(
    minimal_case_file, tmp_path, monkeypatch
):
    # the inputs every chunk shares are scattered to the workers; a one-worker cluster loses
    # them with its worker, and dask cancels every chunk: they are sent again, once
    distributed = pytest.importorskip("dask.distributed")
    case = load_case(minimal_case_file)
    clean = simulate(case, N_CHUNKED, seed=11)
    killer = KillWorker(
        draws_module._draw_chunk, tmp_path / "killed", when=chunk_starting_at(CHUNK_SCENARIOS)
    )
    monkeypatch.setattr(draws_module, "_draw_chunk", killer)
    one_worker = distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
        dashboard_address=None,
    )  # fmt: skip
    with one_worker, pytest.warns(RuntimeWarning, match=r"holding the inputs died.*same numbers"):
        scen = simulate(case, N_CHUNKED, seed=11, backend="dask",
                        scheduler=one_worker.scheduler_address)  # fmt: skip
    assert (tmp_path / "killed").exists()
    assert_identical(clean, scen)


@pytest.fixture(scope="module")
def small():
    case = random_case(2)
    return case, synthetic_scenarios(case, 300, 2, importance=True)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_a_frontier_survives_a_killed_dask_worker_with_identical_points(
    small, tmp_path, monkeypatch, two_dask_workers
):
    frontier_module = importlib.import_module("optimizer.analysis.frontier")
    case, scen = small
    values = [0.5, 1.0, 1.5, 2.0]
    # the one LP: its optimum is a vertex whatever the path (the cutting plane's last digits
    # depend on how points are split between workers: an open question, see the stop note)
    clean = frontier_module.frontier(case, scen, "cvar_scale", values=values, method="lp")
    killer = KillWorker(frontier_module.sweep_block, tmp_path / "killed")
    monkeypatch.setattr(frontier_module, "sweep_block", killer)
    front = frontier_module.frontier(
        case, scen, "cvar_scale", values=values, n_jobs=2, backend="dask",
        scheduler=two_dask_workers, method="lp",
    )  # fmt: skip
    assert (tmp_path / "killed").exists()
    assert front.workers == 2
    assert front.table.drop(columns="seconds").equals(clean.table.drop(columns="seconds"))


FRONTIER_KILLING_EVERY_WORKER = """
import importlib, sys
from fault_cases import KillWorker
from optimizer_cases import random_case, synthetic_scenarios
fr = importlib.import_module("optimizer.analysis.frontier")
case = random_case(2)
scen = synthetic_scenarios(case, 300, 2, importance=True)
fr.sweep_block = KillWorker(fr.sweep_block, sys.argv[2], always=True)
try:
    fr.frontier(case, scen, "cvar_scale", values=[0.5, 1.0, 1.5, 2.0], n_jobs=2,
                backend="dask", scheduler=sys.argv[1])
except Exception as exc:
    print("raised", type(exc).__module__, type(exc).__name__, exc)
else:
    print("no error")
"""


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_a_frontier_whose_tasks_kill_every_dask_worker_stops_with_a_typed_error(
    tmp_path, two_dask_workers
):
    script = tmp_path / "frontier_kills.py"
    script.write_text(FRONTIER_KILLING_EVERY_WORKER, encoding="utf-8")
    try:
        done = subprocess.run(
            [sys.executable, str(script), two_dask_workers, str(tmp_path / "killed")],
            cwd=TESTS, env={**os.environ, "PYTHONPATH": str(TESTS)}, capture_output=True,
            text=True, timeout=45,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        pytest.fail("the frontier still waits 45 s after dask gave up on its task")
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith(("raised optimizer.", "raised models.")), last


# --- the solver failing or running out of time ----------------------------------------------
@pytest.fixture
def highs_fails(monkeypatch):
    """HiGHS gives up at once, whoever calls it (cvxpy's interface or the cut master)."""
    import highspy

    monkeypatch.setattr(highspy.Highs, "run", lambda self, *a, **k: highspy.HighsStatus.kError)


@pytest.fixture
def clarabel_fails(monkeypatch):
    import cvxpy as cp

    solve = cp.Problem.solve

    def failing(self, *args, **kwargs):
        if kwargs.get("solver") == "CLARABEL":
            raise SolverError("injected: Clarabel failed")
        return solve(self, *args, **kwargs)

    monkeypatch.setattr(cp.Problem, "solve", failing)


def test_highs_failing_falls_back_to_clarabel_and_records_it(small, monkeypatch):
    case, scen = small
    clean = optimize(case, scen, method="lp")
    import highspy

    monkeypatch.setattr(highspy.Highs, "run", lambda self, *a, **k: highspy.HighsStatus.kError)
    result = optimize(case, scen, method="lp")
    assert clean.solver == "HIGHS" and clean.fallbacks == ()
    assert result.solver == "CLARABEL" and result.status == "optimal"
    assert [f.split(":")[0] for f in result.fallbacks] == ["stage 1", "stage 2"]
    assert all("HIGHS returned solver_error" in f and "retried with CLARABEL" in f
               for f in result.fallbacks)  # fmt: skip
    assert result.objective_weighted_gap_usd == pytest.approx(
        clean.objective_weighted_gap_usd, rel=1e-6
    )


def test_highs_failing_in_the_cutting_plane_is_a_fallback_or_a_solver_failure(small, highs_fails):
    case, scen = small
    result = optimize(case, scen, method="cutting_plane")
    # the master failed: the one-LP formulation took over, and HiGHS failing there too, Clarabel
    assert result.method == "lp" and result.solver == "CLARABEL"
    assert result.fallbacks[0].startswith("cutting plane: HIGHS returned status 'solver_error'")
    assert "solved with the one-LP formulation" in result.fallbacks[0]


def test_both_solvers_failing_is_a_solver_failure_and_optimize_exits_1(
    small, highs_fails, clarabel_fails, tmp_path, capsys
):
    case, scen = small
    with pytest.raises(SolverFailure) as info:
        optimize(case, scen, method="lp")
    assert [a.split(":")[0] for a in info.value.attempts] == ["HIGHS", "CLARABEL"]
    assert info.value.stage == 1

    out = tmp_path / "opt"
    assert main(["optimize", "-n", "300", "--cvar-method", "lp", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: ")
    assert "HIGHS" in lines[0] and "CLARABEL" in lines[0] and "Traceback" not in err
    assert not out.exists() and hidden_entries(tmp_path) == []


@pytest.mark.parametrize("method", ["lp", "cutting_plane"])
def test_a_tiny_time_limit_is_a_solver_failure_not_a_fallback(small, method):
    case, scen = small
    with pytest.raises(SolverFailure, match=r"time limit") as info:
        optimize(case, scen, method=method, time_limit_s=1e-6)
    assert info.value.status == "user_limit" and info.value.solver == "HIGHS"
    assert len(info.value.attempts) == 1  # Clarabel was not tried: the time was spent


# --- an unwritable folder, a full disk -------------------------------------------------------
@pytest.fixture(scope="module")
def run_record():
    """A small finished run, so the write faults below skip the minutes of a real one."""
    from optimizer.door.run import RunRecord

    case = load_case()
    scen = simulate(case, 300, seed=5)
    return RunRecord(
        case=case, scenarios=scen, allocation=optimize(case, scen), out_of_sample=None,
        stresses=(), seed=5, n_scenarios=300, scenario_method="mc",
    )  # fmt: skip


@pytest.fixture
def fast_run(run_record, monkeypatch):
    monkeypatch.setattr("optimizer.door.run.run_case", lambda *args, **kwargs: run_record)


@pytest.fixture
def previous_run(tmp_path) -> Path:
    out = tmp_path / "out"
    out.mkdir()
    (out / "result.json").write_text('{"from": "the previous run"}', encoding="utf-8")
    (out / "report.html").write_text("<p>previous report</p>", encoding="utf-8")
    write_manifest(out, "run", ["result.json", "report.html"])  # ppcfin's own: replaceable
    return out


def enospc_half_way(real_write, name: str):
    """A Path.write_text that writes half of ``name`` (or of a temporary file for it,
    ``.name.<random>.tmp``) and then finds the disk full."""

    def write_text(self, data, *args, **kwargs):
        temporary = self.name.startswith(f".{name}.") and self.name.endswith(".tmp")
        if self.name != name and not temporary:
            return real_write(self, data, *args, **kwargs)
        real_write(self, data[: len(data) // 2], *args, **kwargs)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))

    return write_text


def enospc_in_savez(fh, **arrays):
    fh.write(b"PK\x03\x04 half a zip")
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize(
    "full_at",
    ["run.json", "scenarios.npz", pytest.param("report.html", marks=pytest.mark.slow)],
)  # the report needs its charts drawn first (about 10 s)
def test_a_full_disk_mid_write_keeps_the_previous_run_byte_identical(
    full_at, fast_run, previous_run, tmp_path, monkeypatch, capsys
):
    before = snapshot(previous_run)
    if full_at == "scenarios.npz":
        monkeypatch.setattr(np, "savez", enospc_in_savez)
    else:
        real = pathlib.Path.write_text
        monkeypatch.setattr(pathlib.Path, "write_text", enospc_half_way(real, full_at))
    code = main(["run", "-n", "300", "--out", str(previous_run), "--format", "html"])
    err = capsys.readouterr().err
    assert code == 1
    assert f"Error: cannot write {previous_run}: No space left on device (the disk is full" in err
    assert "earlier outputs are left as they were" in err and "Traceback" not in err
    assert snapshot(previous_run) == before
    assert hidden_entries(tmp_path) == [] and hidden_entries(previous_run) == []


def test_an_output_folder_where_a_file_stands_exits_1_naming_it(fast_run, tmp_path, capsys):
    blocker = tmp_path / "results"
    blocker.write_text("not a folder", encoding="utf-8")
    out = blocker / "out"
    assert main(["run", "-n", "300", "--out", str(out), "--format", "html"]) == 1
    err = capsys.readouterr().err
    assert f"cannot write {out}:" in err and "a file stands where a folder is needed" in err
    assert blocker.read_text() == "not a folder" and hidden_entries(tmp_path) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through a read-only mode")
def test_an_unwritable_parent_exits_1_and_keeps_the_previous_run(
    fast_run, previous_run, tmp_path, capsys
):
    before = snapshot(previous_run)
    tmp_path.chmod(0o500)
    try:
        code = main(["run", "-n", "300", "--out", str(previous_run), "--format", "html"])
    finally:
        tmp_path.chmod(0o700)
    err = capsys.readouterr().err
    assert code == 1
    assert f"cannot write {previous_run}: Permission denied (no permission" in err
    assert snapshot(previous_run) == before and hidden_entries(tmp_path) == []


def test_a_refused_staging_folder_exits_1_naming_the_output(
    fast_run, previous_run, tmp_path, monkeypatch, capsys
):
    """As root a read-only mode does not bind: refuse the staging folder itself."""

    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr("optimizer.door.atomic.tempfile.mkdtemp", refuse)
    before = snapshot(previous_run)
    assert main(["run", "-n", "300", "--out", str(previous_run), "--format", "html"]) == 1
    assert f"cannot write {previous_run}: Permission denied" in capsys.readouterr().err
    assert snapshot(previous_run) == before and hidden_entries(tmp_path) == []


def test_simulate_out_on_a_full_disk_keeps_the_previous_file(
    minimal_case_file, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "scen.npz"
    assert main(["simulate", str(minimal_case_file), "-n", "300", "--out", str(out)]) == 0
    previous = out.read_bytes()  # a scenario set ppcfin wrote: --out may replace it
    monkeypatch.setattr(np, "savez", enospc_in_savez)
    assert main(["simulate", str(minimal_case_file), "-n", "500", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"cannot write {out}: No space left on device" in err and "Traceback" not in err
    assert out.read_bytes() == previous and hidden_entries(tmp_path) == []


def test_write_text_atomic_on_a_full_disk_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "note.txt"
    path.write_text("previous", encoding="utf-8")
    real = pathlib.Path.write_text
    monkeypatch.setattr(pathlib.Path, "write_text", enospc_half_way(real, "note.txt"))
    with pytest.raises(OutputError, match=r"note.txt: No space left on device \(the disk is full"):
        write_text_atomic(path, "new text " * 100)
    assert path.read_text() == "previous" and hidden_entries(tmp_path) == []


def test_an_interrupted_block_leaves_no_staging_folder(previous_run, tmp_path):
    before = snapshot(previous_run)
    with pytest.raises(KeyboardInterrupt), staged_directory(previous_run, command="run") as stage:
        (stage / "result.json").write_text("half", encoding="utf-8")
        raise KeyboardInterrupt
    assert snapshot(previous_run) == before and hidden_entries(tmp_path) == []


def test_a_signal_during_the_swap_is_held_until_the_new_folder_is_in_place(
    previous_run, tmp_path, monkeypatch
):
    real_replace = os.replace
    calls = []

    def replace_then_signal(src, dst):
        calls.append(dst)
        if len(calls) == 1:  # between the two renames: the old folder is already moved away
            os.kill(os.getpid(), signal.SIGINT)
        real_replace(src, dst)

    monkeypatch.setattr("optimizer.door.atomic.os.replace", replace_then_signal)
    with pytest.raises(KeyboardInterrupt), staged_directory(previous_run, command="run") as stage:
        (stage / "result.json").write_text("new", encoding="utf-8")
    assert len(calls) == 2  # both renames ran before the interrupt was delivered
    after = snapshot(previous_run)
    assert after.pop("result.json") == b"new" and list(after) == ["ppcfin-manifest.json"]
    assert hidden_entries(tmp_path) == []


# --- SIGINT / SIGTERM during `ppcfin run` ----------------------------------------------------
def _loky_workers(pid: int) -> list[int]:
    found = []
    for child in descendants(pid):
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if b"LokyProcess" in cmdline:
            found.append(child)
    return found


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs /proc")
@pytest.mark.parametrize(
    ("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)]
)
def test_a_signal_during_ppcfin_run_exits_cleanly(signum, code, previous_run, tmp_path):
    before = snapshot(previous_run)
    proc = subprocess.Popen(
        [sys.executable, "-m", "optimizer.door.cli", "run", "-n", "40000", "--jobs", "2",
         "--out", str(previous_run)],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=default_signals,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while not _loky_workers(proc.pid):  # simulating on worker processes
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no loky worker started"
            time.sleep(0.05)
        procs = descendants(proc.pid)
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    name = signal.Signals(signum).name
    assert proc.returncode == code, err
    assert err.strip() == (
        f"Interrupted ({name}): stopped, no partial output was written; earlier outputs are "
        "as they were."
    )
    assert snapshot(previous_run) == before
    assert hidden_entries(tmp_path) == [] and hidden_entries(previous_run) == []
    assert still_running(procs, grace_s=1.0) == []


def test_a_signal_before_the_pools_manager_thread_starts_still_stops_its_workers(monkeypatch):
    """loky refuses to shut down a pool whose manager thread was made but not yet started
    ("cannot join thread before it is started"): the workers it spawned are killed directly."""
    import types

    from optimizer.door import cli_signals

    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])

    class Process:  # the two calls loky's worker processes answer
        kill = worker.kill

        def join(self, timeout=None):
            worker.wait(timeout)

    class HalfStartedPool:
        def __init__(self):
            self._processes = {worker.pid: Process()}

        def shutdown(self, wait=True, kill_workers=False):
            raise RuntimeError("cannot join thread before it is started")

    module = types.SimpleNamespace(_executor=HalfStartedPool())
    monkeypatch.setitem(sys.modules, "joblib.externals.loky.reusable_executor", module)
    try:
        assert cli_signals.interrupted(signal.SIGTERM) == 143
        assert worker.poll() is not None
    finally:
        if worker.poll() is None:
            worker.kill()
        worker.wait()


def test_a_failed_cutting_plane_on_many_scenarios_does_not_build_the_huge_lp(monkeypatch):
    """Above LP_FALLBACK_MAX_SCENARIOS the one-LP fallback would need tens of GB: a typed error
    that says so, instead of a silent build."""
    import highspy

    import optimizer.solve as solve_module
    from models import load_case, simulate

    case = load_case()
    scen = simulate(case, 600, seed=3)
    monkeypatch.setattr(solve_module, "LP_FALLBACK_MAX_SCENARIOS", 500)
    monkeypatch.setattr(highspy.Highs, "run", lambda self, *a, **k: highspy.HighsStatus.kError)
    with pytest.raises(SolverFailure, match="one-LP fallback is not tried above 500 scenarios"):
        optimize(case, scen, method="cutting_plane")
