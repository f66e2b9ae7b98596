"""The fuzz worker: a process that runs one case at a time in-process through Typer's CliRunner, supervised by
``Worker``, which replaces it when a case hangs inside compiled code or kills it."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sys
import time
import traceback
from pathlib import Path

KILL_GRACE = 20.0  # after the alarm: time for a case to unwind before the worker is killed


class Hang(BaseException):
    """Raised by SIGALRM: not an Exception, so cfsx's error handling does not turn it into an exit code."""


def _alarm(signum, frame) -> None:
    raise Hang()


class _CurrentStderr:
    """A stream for logging handlers: writes to whatever sys.stderr is now (the case's, inside CliRunner)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        with contextlib.suppress(Exception):
            sys.stderr.flush()


def _isolate_case_state() -> None:
    """Undo what one in-process run leaves behind for the next: logging handlers bound to an earlier case's
    (closed) stderr, TensorFlow's retracing counter across models, Keras' global session."""
    import logging

    proxy = _CurrentStderr()
    loggers = [logging.getLogger()] + [x for x in logging.Logger.manager.loggerDict.values()
                                       if isinstance(x, logging.Logger)]  # fmt: skip
    for logger in loggers:
        for handler in logger.handlers:
            if type(handler) is logging.StreamHandler or handler.__class__.__name__ == "PythonHandler":
                handler.stream = proxy
    absl = sys.modules.get("absl.logging")
    if absl is not None:
        with contextlib.suppress(Exception):
            absl.get_absl_handler().python_handler.stream = proxy
    functions = sys.modules.get("tensorflow.python.eager.polymorphic_function.polymorphic_function")
    if functions is not None:
        with contextlib.suppress(Exception):
            functions._frequent_tracing_detector_manager = functions._FrequentTracingDetectorManager()
    keras = sys.modules.get("keras")
    if keras is not None:
        with contextlib.suppress(Exception):
            keras.backend.clear_session()


def worker_main(connection, log_path: str, memory_limit: int) -> None:
    os.setsid()  # its own process group: the supervisor kills it with every pool process it started
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.dup2(log, 1)
    os.dup2(log, 2)
    if memory_limit:
        import resource

        resource.setrlimit(resource.RLIMIT_DATA, (memory_limit, resource.getrlimit(resource.RLIMIT_DATA)[1]))
    for attempt in range(5):  # import everything once, before the cases: others may be editing cfsx
        try:
            import importlib

            from typer.testing import CliRunner

            import cfsx.app.cli

            for module in ("correction", "io.dataset", "learning.evaluation", "interpretation", "learning.models",
                           "io.plots", "interpretation.refinement", "simulation", "learning.training"):  # fmt: skip
                importlib.import_module(f"cfsx.{module}")

            break
        except Exception:
            if attempt == 4:
                raise
            time.sleep(3)
    runner = CliRunner()
    signal.signal(signal.SIGALRM, _alarm)
    connection.send("ready")
    while True:
        try:
            message = connection.recv()
        except EOFError:  # the supervisor is gone
            return
        if message is None:
            return
        os.chdir(message["cwd"])
        _isolate_case_state()
        began = time.perf_counter()
        result, hang = None, False
        signal.setitimer(signal.ITIMER_REAL, message["timeout"])
        try:
            result = runner.invoke(cfsx.app.cli.app, message["args"])
        except Hang:
            hang = True
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        seconds = time.perf_counter() - began
        if hang or result is None:
            connection.send({"hang": True, "seconds": seconds})
            continue
        exception = result.exception
        text = ""
        if exception is not None and not isinstance(exception, SystemExit) and result.exc_info:
            text = "".join(traceback.format_exception(*result.exc_info))
        connection.send({
            "hang": False, "seconds": seconds, "exit_code": result.exit_code, "stdout": result.stdout,
            "stderr": result.stderr, "output": result.output, "traceback": text,
            "exception": None if exception is None else type(exception).__name__,
        })  # fmt: skip


class Worker:
    """The supervisor's side: a worker process, replaced when it hangs in compiled code or dies."""

    def __init__(self, log_path: Path, memory_limit: int) -> None:
        self.log_path, self.memory_limit = log_path, memory_limit
        self.process = None
        self.connection = None
        self.starts = 0

    def start(self) -> None:
        context = multiprocessing.get_context("spawn")
        self.connection, child = context.Pipe()
        # Not a daemon: cfsx starts process pools of its own. It ends when this process closes the pipe.
        self.process = context.Process(target=worker_main, args=(child, str(self.log_path), self.memory_limit))
        self.process.start()
        child.close()
        self.starts += 1
        try:
            ready = self.connection.poll(600) and self.connection.recv() == "ready"
        except (EOFError, OSError):
            ready = False
        if not ready:
            raise RuntimeError(f"the fuzz worker did not start; see {self.log_path}")

    def kill(self) -> None:
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.join(10)
        self.process = None

    def run(self, args: list[str], cwd: Path, timeout: float) -> dict:
        if self.process is None or not self.process.is_alive():
            self.start()
        try:
            self.connection.send({"args": args, "cwd": str(cwd), "timeout": timeout})
            if self.connection.poll(timeout + KILL_GRACE):
                return self.connection.recv()
            self.kill()
            return {"hang": True, "killed": True, "seconds": timeout + KILL_GRACE}
        except (EOFError, OSError, BrokenPipeError):
            self.process.join(5)
            code = self.process.exitcode
            self.kill()
            what = f"signal {-code} ({signal.Signals(-code).name})" if code and code < 0 else f"exit {code}"
            return {"crashed": True, "seconds": 0.0, "exit_code": code, "output": f"worker died: {what}"}

    def stop(self) -> None:
        if self.process is not None and self.process.is_alive():
            with contextlib.suppress(Exception):
                self.connection.send(None)
            self.process.join(10)
        self.kill()
