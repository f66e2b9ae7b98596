"""Progress for notebooks: tqdm.auto bars behind the progress callbacks of cfsx's long functions.

The library reports progress only through callbacks (``progress=`` of simulate, interpret_images,
correct_files, evaluate; ``on_epoch=`` of train) and draws nothing itself; the CLI draws rich bars,
a notebook passes ``ProgressBars()``, a script passes nothing.
"""

from __future__ import annotations

import contextlib
from typing import Any


class ProgressBars:
    """A progress callback that draws one tqdm.auto bar per stage (a widget in Jupyter, text elsewhere).

    It takes every form the library calls: ``(done, total)``, ``(stage, done, total)``, a message
    (evaluate) or an epoch report (train's ``on_epoch``). Needs tqdm (``pip install cfsx[notebook]``).
    """

    def __init__(self, description: str = "") -> None:
        try:
            from tqdm import tqdm

            with contextlib.suppress(ImportError):
                import ipywidgets  # noqa: F401  (without it tqdm.auto warns and draws text anyway)
                from tqdm.auto import tqdm
        except ImportError:
            from cfsx.errors import ConfigError

            raise ConfigError("progress bars need tqdm: pip install 'cfsx[notebook]'") from None
        self._tqdm = tqdm
        self._description = description
        self._bars: dict[str, Any] = {}

    def __call__(self, *report: Any) -> None:
        if len(report) == 1 and isinstance(report[0], str):  # a message
            self._tqdm.write(report[0])
            return
        if len(report) == 1:  # train's EpochReport
            epoch = report[0]
            self._update("epochs", epoch.epoch, getattr(epoch, "epochs", None))
            return
        stage, done, total = report if len(report) == 3 else (self._description, *report)
        self._update(stage, done, total)

    def _update(self, stage: str, done: float, total: int | None) -> None:
        bar = self._bars.get(stage)
        if bar is None:
            bar = self._bars[stage] = self._tqdm(total=total, desc=stage or None)
        bar.total = total
        bar.n = done
        bar.refresh()
        if total is not None and done >= total:
            bar.close()

    def close(self) -> None:
        """Close every bar still open (a run that stopped early)."""
        for bar in self._bars.values():
            bar.close()
