"""What the training libraries print besides our own progress bar: their progress bars
(weights loading, dataset maps, shard writing), DeepSpeed's accelerator notice and library
deprecation warnings. In a log file each bar update became a line and each warning two. Here
their bars are off, and a warning is one line, once."""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def quiet_libraries(say: Callable[[str], None]) -> Iterator[None]:
    """Within: no third-party progress bars; library Future/Deprecation warnings dropped;
    any other warning given to `say` as "warning: CATEGORY: message" the first time only."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")
    _no_accelerator_notice()
    import datasets
    from transformers.utils import logging as transformers_logging

    datasets.disable_progress_bars()
    transformers_logging.disable_progress_bar()
    seen: set[str] = set()

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        text = f"warning: {category.__name__}: {str(message).splitlines()[0]}"
        if text not in seen:
            seen.add(text)
            say(text)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.showwarning = show
        yield


def _no_accelerator_notice() -> None:
    """DeepSpeed logs "Setting accelerator to CPU" at WARNING when it finds no GPU; on a
    machine without one, say so up front so it has nothing to guess."""
    logging.getLogger("DeepSpeed").setLevel(logging.ERROR)
    if "DS_ACCELERATOR" in os.environ:
        return
    import torch

    if not torch.cuda.is_available():
        os.environ["DS_ACCELERATOR"] = "cpu"
