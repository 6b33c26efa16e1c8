"""Executors for `vmaf-roi batch`: move :class:`vmaf_roi.batch.Unit` s to workers, results back.

Both have the same small interface, and neither knows what a unit does:

* ``run(units)`` -> iterator of messages, each a dict with ``type`` (``start``, ``progress``,
  ``note``, ``retry``, ``result``; ``tick`` without a key, now and then while nothing happens)
  and ``key`` (the unit's key); ``result`` carries the dict
  :func:`vmaf_roi.batch.run_unit` returned (or a ``failed`` one when the worker died).
* ``stop(abort)``: ``abort=False`` starts no more units (running ones finish); ``abort=True``
  ends the running ones too (their units get no result).

:class:`LocalExecutor` runs N worker processes, each fed one unit at a time by the driver (so
the queue is bounded by the number of workers and a dead worker's unit is known exactly).
:class:`DaskExecutor` submits the same units to a ``distributed`` cluster, at most a bounded
number in flight; units that need a GPU carry the Dask resource ``GPU=1``.
"""

from __future__ import annotations

import multiprocessing as mp
import multiprocessing.connection
import os
import queue
import signal
import sys
import uuid
from collections import deque
from typing import Any, Iterator

from .batch import Unit, run_unit


def default_workers() -> int:
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    return max(1, n)


def _signal_reason(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return f"worker process was killed ({name}) while running this job"
    return f"worker process exited unexpectedly (exit code {exitcode}) while running this job"


# -- local processes ------------------------------------------------------------------------
def _die_with_parent() -> None:
    """Linux: a worker gets SIGKILL when the driver dies, so no orphan finishes an encode alone."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _worker_sigterm(signum, frame) -> None:
    """The driver aborts a running unit with SIGTERM: unwind like Ctrl-C, so the unit's child
    processes (ffmpeg/libvmaf) are stopped and its temporaries removed before the worker exits."""
    signal.signal(signum, signal.SIG_IGN)
    from .errors import interrupt

    interrupt(signum)


def _worker_main(conn, parent_pid: int) -> None:
    from .errors import quiet_unraisable

    sys.unraisablehook = quiet_unraisable  # see errors.interrupt
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver owns Ctrl-C (drain, then abort)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # ... and a closed terminal
    signal.signal(signal.SIGTERM, _worker_sigterm)
    _die_with_parent()
    try:
        _worker_loop(conn, parent_pid)
    except KeyboardInterrupt:
        return


def _worker_loop(conn, parent_pid: int) -> None:
    if os.getppid() != parent_pid:  # the driver died before prctl
        return
    while True:
        try:
            unit = conn.recv()
        except (EOFError, OSError):
            return
        if unit is None:
            return
        key = unit.key

        def report(msg: dict, key: str = key) -> None:
            conn.send({**msg, "key": key})

        res = run_unit(unit, report)
        try:
            conn.send({"type": "result", "key": key, "result": res})
        except (BrokenPipeError, OSError):
            return


class _Proc:
    def __init__(self, ctx) -> None:
        self.conn, child = ctx.Pipe(duplex=True)
        self.proc = ctx.Process(target=_worker_main, args=(child, os.getpid()), daemon=True,
                                name="vmaf-roi-batch-worker")
        self.proc.start()
        child.close()
        self.unit: Unit | None = None
        self.attempt = 0


class _Stoppable:
    """First Ctrl-C: drain (finish running jobs, start no more); second: abort."""

    _stop: str | None = None

    def stop(self, abort: bool = False) -> None:
        if abort:
            self._stop = "abort"
        elif self._stop is None:
            self._stop = "drain"


class LocalExecutor(_Stoppable):
    """N worker processes (spawned, so safe with threads in the driver); bounded retries of a
    unit whose worker died (a job's own error is never retried: it would fail the same way)."""

    name = "local"

    def __init__(self, workers: int | None = None, *, retries: int = 1, start_method: str = "spawn") -> None:
        self.workers = max(1, workers or default_workers())
        self.retries = max(0, retries)
        self.start_method = start_method
        self._stop: str | None = None


    def run(self, units: list[Unit]) -> Iterator[dict[str, Any]]:
        ctx = mp.get_context(self.start_method)
        pending: deque[tuple[Unit, int]] = deque((u, 1) for u in units)
        procs: list[_Proc] = []
        self._stop = None
        try:
            while self._stop != "abort":
                if self._stop is None:
                    for p in procs:
                        if p.unit is None and pending:
                            yield from self._dispatch(p, pending, procs)
                    while pending and len(procs) < self.workers:
                        p = _Proc(ctx)
                        procs.append(p)
                        yield from self._dispatch(p, pending, procs)
                busy = [p for p in procs if p.unit is not None]
                if not busy:
                    if not pending or self._stop is not None:
                        break
                    continue
                if not mp.connection.wait([p.conn for p in busy] + [p.proc.sentinel for p in busy], timeout=0.25):
                    yield {"type": "tick"}  # lets the driver act on Ctrl-C while jobs are silent
                for p in busy:
                    dead = False
                    try:
                        while p.unit is not None and p.conn.poll():
                            msg = p.conn.recv()
                            if msg.get("type") == "result":
                                p.unit = None
                            yield msg
                    except (EOFError, OSError):
                        dead = True
                    if p.unit is not None and (dead or not p.proc.is_alive()):
                        p.proc.join(timeout=5)
                        yield from self._died(p, pending)
                        procs.remove(p)
        finally:
            self._shutdown(procs)

    def _dispatch(self, p: _Proc, pending: deque, procs: list[_Proc]) -> Iterator[dict[str, Any]]:
        unit, attempt = pending.popleft()
        try:
            p.conn.send(unit)
        except (BrokenPipeError, OSError):  # died while idle: put the unit back, drop the worker
            pending.appendleft((unit, attempt))
            procs.remove(p)
            return
        p.unit, p.attempt = unit, attempt
        yield {"type": "start", "key": unit.key, "worker": f"pid {p.proc.pid}", "pid": p.proc.pid, "attempt": attempt}

    def _died(self, p: _Proc, pending: deque) -> Iterator[dict[str, Any]]:
        unit, attempt = p.unit, p.attempt
        assert unit is not None
        p.unit = None
        reason = _signal_reason(p.proc.exitcode)
        if attempt <= self.retries and self._stop is None:
            pending.appendleft((unit, attempt + 1))
            yield {"type": "retry", "key": unit.key, "reason": f"{reason}; retrying ({attempt}/{self.retries})"}
        else:
            yield {"type": "result", "key": unit.key,
                   "result": {"status": "failed", "reason": reason, "error": "WorkerDied"}}

    @staticmethod
    def _shutdown(procs: list[_Proc]) -> None:
        for p in procs:
            if p.unit is not None:  # abort: end running encodes now
                p.proc.terminate()
            else:
                try:
                    p.conn.send(None)
                except (BrokenPipeError, OSError):
                    pass
        for p in procs:
            p.proc.join(timeout=10)
            if p.proc.is_alive():
                p.proc.kill()
                p.proc.join(timeout=5)
            p.conn.close()


# -- Dask distributed -----------------------------------------------------------------------
def _dask_task(unit: Unit, topic: str) -> dict[str, Any]:
    """Runs on a Dask worker: the same run_unit, with reports sent as Dask events."""
    from distributed import get_worker

    worker = get_worker()

    def report(msg: dict) -> None:
        try:
            worker.log_event(topic, {**msg, "key": unit.key})
        except Exception:  # progress is never worth failing a job for
            pass

    report({"type": "start", "worker": worker.address})
    return run_unit(unit, report)


def _workers_info(client) -> dict[str, dict]:
    try:
        info = client.scheduler_info(n_workers=-1)
    except TypeError:
        info = client.scheduler_info()
    return info.get("workers", {})


class DaskExecutor(_Stoppable):
    """Units as Dask tasks on ``scheduler`` (``tcp://HOST:PORT``) or an existing ``client``."""

    name = "dask"

    def __init__(self, scheduler: str | None = None, *, client=None, max_in_flight: int | None = None,
                 connect_timeout: float = 30) -> None:
        if scheduler is None and client is None:
            raise ValueError("DaskExecutor needs a scheduler address or a client")
        self.scheduler, self._client, self.max_in_flight = scheduler, client, max_in_flight
        self.connect_timeout = connect_timeout
        self.workers: int | None = None
        self._stop: str | None = None


    def _connect(self):
        from .errors import ConfigError

        try:
            from distributed import Client
        except ImportError:
            raise ConfigError("--executor dask needs dask.distributed: pip install 'vmaf-roi[cluster]'") from None
        try:
            return Client(self.scheduler, set_as_default=False, timeout=self.connect_timeout)
        except (OSError, TimeoutError) as exc:
            raise ConfigError(f"cannot reach the Dask scheduler at {self.scheduler}: {exc}") from None

    def run(self, units: list[Unit]) -> Iterator[dict[str, Any]]:
        from distributed import KilledWorker

        own = self._client is None
        client = self._client or self._connect()
        q: queue.Queue = queue.Queue()
        topic = f"vmaf-roi-batch-{uuid.uuid4().hex}"
        futures: dict[str, Any] = {}
        self._stop = None
        try:
            client.subscribe_topic(topic, lambda event: q.put(event[1]))
            workers = _workers_info(client)
            self.workers = sum(int(w.get("nthreads", 1)) for w in workers.values()) or None
            has_gpu = any(float((w.get("resources") or {}).get("GPU", 0)) >= 1 for w in workers.values())
            limit = self.max_in_flight or max(2, 2 * (self.workers or 1))
            pending: deque[Unit] = deque()
            for u in units:
                if u.gpu and not has_gpu:
                    yield {"type": "result", "key": u.key, "result": {
                        "status": "failed", "error": "NoGPUWorker",
                        "reason": "job needs a GPU but no worker of the cluster offers the Dask resource GPU "
                                  "(start GPU workers with --resources GPU=1, or set gpu: false)"}}
                else:
                    pending.append(u)
            while self._stop != "abort":
                while self._stop is None and pending and len(futures) < limit:
                    u = pending.popleft()
                    fut = client.submit(_dask_task, u, topic, key=f"vmaf-roi-{uuid.uuid4().hex}", pure=False,
                                        resources={"GPU": 1} if u.gpu else None, retries=0)
                    futures[u.key] = fut
                    fut.add_done_callback(lambda f, k=u.key: q.put({"type": "_finished", "key": k}))
                if not futures and (not pending or self._stop is not None):
                    break
                try:
                    msg = q.get(timeout=0.25)
                except queue.Empty:
                    yield {"type": "tick"}
                    continue
                if msg.get("type") != "_finished":
                    if msg.get("key") in futures:
                        yield msg
                    continue
                fut = futures.pop(msg["key"], None)
                if fut is None:
                    continue
                try:
                    res = fut.result()
                except KilledWorker as exc:
                    res = {"status": "failed", "error": "WorkerDied",
                           "reason": f"Dask workers running this job kept dying ({exc})"}
                except Exception as exc:  # cancelled, or a failure outside run_unit
                    res = {"status": "failed", "error": type(exc).__name__, "reason": f"dask: {type(exc).__name__}: {exc}"}
                while True:  # deliver the job's last reports before its result
                    try:
                        early = q.get_nowait()
                    except queue.Empty:
                        break
                    if early.get("type") == "_finished":
                        q.put(early)
                        break
                    if early.get("key") in futures or early.get("key") == msg["key"]:
                        yield early
                yield {"type": "result", "key": msg["key"], "result": res}
        finally:
            if futures:
                client.cancel(list(futures.values()))
            try:
                client.unsubscribe_topic(topic)
            except Exception:
                pass
            if own:
                client.close()
