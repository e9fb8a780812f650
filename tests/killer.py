"""Run the colorkit CLI, sending this process a signal when training reaches a given step.

Used by test_training.py to kill a run at a deterministic point with a real SIGKILL or SIGINT:
``python killer.py SIGNAL STEP run ...``.
"""

import os
import signal
import sys

from colorkit.engine.training import Trainer

_signal = getattr(signal, sys.argv[1])
_step = int(sys.argv[2])
_original = Trainer.train_batch


def _train_batch(self, rgb):
    if self.state.step == _step:
        os.kill(os.getpid(), _signal)
    return _original(self, rgb)


Trainer.train_batch = _train_batch

if __name__ == "__main__":
    from colorkit.front.cli import main

    sys.argv = ["colorkit", *sys.argv[3:]]
    main()
