"""The engine: everything that runs a network, on top of the kernel. The trainer (built
components in, a run directory out), checkpoints and run directories, evaluation and its one
scoring path, inference and colorizing files, export to ONNX and TorchScript, the device choice
(:mod:`~colorkit.engine.devices`, the only one), the CPU thread count of the commands
(:mod:`~colorkit.engine.threads`) and distributed training; its progress display is
the kernel's (:mod:`~colorkit.kernel.progress`, the only one). It imports the kernel, never the front, and
names no built-in plugin: what it builds comes from the registry or from the caller.
"""
