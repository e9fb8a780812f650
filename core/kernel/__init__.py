"""The kernel: what every other layer and every plugin builds on. The five component interfaces
(:mod:`~colorkit.kernel.interfaces`) and their kinds (:mod:`~colorkit.kernel.kinds`, the one table), the plugin hooks and the registry that loads plugins and
reads ``registry.yaml`` (presets and defaults), component options, experiments, the sRGB <->
L*a*b* conversion (:mod:`~colorkit.kernel.color`, the only one), errors, the one atomic file
write (:mod:`~colorkit.kernel.files`), downloads, the progress display
(:mod:`~colorkit.kernel.progress`, the only one) and the contract checks plugin authors run
(:mod:`~colorkit.kernel.testing`). It imports nothing from the engine or the front, and names no
built-in plugin: plugins import the kernel only.
"""
