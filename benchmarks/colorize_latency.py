"""Colorize latency and peak memory of the shipped default model on this machine's CPU.

    python benchmarks/colorize_latency.py [--runs 5] [--working-sizes default] [--threads default]
                                          [--backends torch] [--photos 512x512,2048x1536]

It times the model ``colorkit colorize`` uses when no ``--model`` is given (``defaults.model`` of
registry.yaml, loaded by ``colorkit.engine.inference.load_model(None)``), for a 512x512 and a
2048x1536 photo, at the model's own working size (``default``; other sizes for comparison, e.g.
``--working-sizes default,256``) and with the threads ``colorkit colorize`` picks by itself
(``default``; ``--threads default,1`` compares):

* ``array``: ``colorkit.engine.inference.colorize_array`` from a uint8 array to a uint8 array, the
  median of ``--runs`` runs after one warm-up run;
* ``file``: the same through ``colorkit.engine.colorizer.colorize_files`` from a JPEG file to a PNG
  file (decoding, EXIF, encoding and the atomic write included), median of the runs;
* ``peak RSS``: the process's peak resident memory (``ru_maxrss``) at the end (importing torch
  alone takes about 580 MiB here), and ``RSS growth``: how far colorizing raised that peak over
  the peak before the first call (torch, the model and the photo already in memory).

Each case runs in a fresh subprocess so that one case's peak memory does not hide another's; a
line on stderr says which case runs and what it measured, as it goes. The default run (two cases)
takes well under a minute on a 2-core CPU. The target is under 0.3 s for 512x512 at the default
working size.

``--backends torch,onnxruntime`` measures each case with both backends of ``colorkit colorize``:
the model exported to ONNX (``colorkit.engine.export``) and run by ONNX Runtime with NumPy around it
(``colorkit.engine.onnx_backend``; the threads apply to its intra-op threads too), side by side in
one run. The ONNX rows' peak RSS still includes torch, which the benchmark imports to load the model.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PHOTOS = {"512x512": (512, 512), "2048x1536": (2048, 1536)}  # name: (width, height)


def default_model_name() -> str:
    """``defaults.model`` of registry.yaml: what ``colorkit colorize`` runs without ``--model``."""
    from colorkit.kernel.registry import build_registry

    return str(build_registry(autoload=False).defaults.get("model"))


def _rss_mib() -> float:
    # ru_maxrss is in KiB on Linux, bytes on macOS.
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024.0 / (1024.0 if sys.platform == "darwin" else 1.0)


def child(photo: str, working_size: int | None, runs: int, threads: int | None, backend: str = "torch") -> dict:
    """One case, its photo, ONNX file and outputs in a scratch folder removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="colorkit-bench-") as scratch:
        return _case(Path(scratch), photo, working_size, runs, threads, backend)


def _case(folder: Path, photo: str, working_size: int | None, runs: int, threads: int | None, backend: str) -> dict:
    from colorkit.engine.threads import cpu_threads

    with cpu_threads(threads):  # None: what colorkit colorize picks by itself
        return _measure(folder, photo, working_size, runs, backend)


def _measure(folder: Path, photo: str, working_size: int | None, runs: int, backend: str) -> dict:
    import numpy as np
    import torch
    from PIL import Image
    from skimage import data

    from colorkit.engine.colorizer import colorize_files
    from colorkit.engine.inference import colorize_array, load_model

    model = load_model(None, device="cpu", working_size=working_size)  # the default model, as colorize loads it
    gen, working_size, model_name = model.gen, model.working_size, model.name
    threads = torch.get_num_threads()
    width, height = PHOTOS[photo]
    image = np.asarray(Image.fromarray(data.coffee()).resize((width, height), Image.BICUBIC))
    src = folder / "photo.jpg"
    Image.fromarray(image).save(src, quality=92)
    target: object = model
    run = colorize_array
    if backend == "onnxruntime":
        from colorkit.engine import onnx_backend
        from colorkit.engine.export import ExportedColorizer, example_input, export_onnx, metadata

        target = folder / "model.onnx"
        export_onnx(ExportedColorizer(gen).eval(), example_input(model), metadata(model), target)
        model = onnx_backend.load_onnx(target, working_size, threads=threads)
        run = onnx_backend.colorize_array

    before = _rss_mib()  # torch, the model and the photo are loaded; nothing colorized yet
    run(model, image)  # warm-up (allocator, oneDNN kernels)
    array_times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        out = run(model, image)
        array_times.append(time.perf_counter() - t0)
    assert out.shape == (height, width, 3)
    file_times = []
    for i in range(runs):
        t0 = time.perf_counter()
        report = colorize_files(target, [src], folder / f"out{i}", fmt="png", working_size=working_size,
                                backend=backend, threads=threads)
        file_times.append(time.perf_counter() - t0)
        assert len(report.written) == 1, report.failed
    after = _rss_mib()
    from colorkit.engine.inference import predict_lab, working_shape
    from colorkit.kernel.color import lab_to_linear_rgb, lightness

    rgb = torch.from_numpy(image.copy()).permute(2, 0, 1)[None].float() / 255.0
    lab = predict_lab(gen, lightness(rgb), working_shape(height, width, working_size, gen.size_multiple))
    lin = lab_to_linear_rgb(lab)
    out_of_gamut = float((((lin < -1e-4) | (lin > 1 + 1e-4)).any(dim=1)).float().mean())

    return {
        "model": model_name,
        "photo": photo,
        "backend": backend,
        "working_size": working_size,
        "model_input": "x".join(map(str, working_shape(height, width, working_size, gen.size_multiple))),
        "array_median_s": statistics.median(array_times),
        "array_min_s": min(array_times),
        "file_median_s": statistics.median(file_times),
        "peak_rss_mib": after,
        "rss_growth_mib": max(0.0, after - before),
        "threads": threads,
        "out_of_gamut_fraction": out_of_gamut,
    }


def _cpu_name() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return cpu


def _split(text: str) -> list[str]:
    return list(dict.fromkeys(x.strip() for x in text.split(",") if x.strip()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs per case (median reported)")
    parser.add_argument("--working-sizes", default="default",
                        help="comma-separated sizes; 'default' = the default model's own working size")
    parser.add_argument("--threads", default="default",
                        help="comma-separated torch thread counts to measure; 'default' = what colorkit colorize picks")
    parser.add_argument("--backends", default="torch", help="comma-separated: torch, onnxruntime")
    parser.add_argument("--photos", default=",".join(PHOTOS), help=f"comma-separated photo sizes of {', '.join(PHOTOS)}")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--child", nargs=3, metavar=("PHOTO", "SIZE", "BACKEND"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        threads = None if args.threads == "default" else int(args.threads)
        size = None if args.child[1] == "default" else int(args.child[1])
        print(json.dumps(child(args.child[0], size, args.runs, threads, args.child[2])))
        return

    import torch

    import colorkit

    photos, sizes = _split(args.photos), _split(args.working_sizes)
    for photo in photos:
        if photo not in PHOTOS:
            sys.exit(f"--photos {photo}: choose from {', '.join(PHOTOS)}")
    cases = [(t, size, photo, b) for t in _split(args.threads) for size in sizes for photo in photos
             for b in _split(args.backends)]
    model = default_model_name()
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    cpu = _cpu_name()
    print(f"colorkit {colorkit.__version__}, torch {torch.__version__}, python {platform.python_version()}, "
          f"{cpu}, {os.cpu_count()} CPUs, model {model} (the default model of colorkit colorize)")
    load_before = [round(x, 2) for x in os.getloadavg()]
    print(f"load average before: {' '.join(f'{x:.2f}' for x in load_before)}", flush=True)
    rows = []
    for k, (threads, size, photo, backend) in enumerate(cases, 1):
        what = f"[{k}/{len(cases)}] {photo} at working size {size}, {backend}, threads {threads}"
        print(f"{what}: running ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        cmd = [sys.executable, __file__, "--child", photo, size, backend, "--runs", str(args.runs), "--threads", threads]
        out = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if out.returncode != 0:
            sys.exit(f"case {photo} @ {size} ({backend}) failed:\n{out.stderr}")
        r = {**json.loads(out.stdout.strip().splitlines()[-1]), "default_size": size == "default"}
        rows.append(r)
        print(f"{what}: array {r['array_median_s']:.3f} s, file {r['file_median_s']:.3f} s "
              f"({r['working_size']} px, {r['threads']} thread(s); case done in {time.perf_counter() - t0:.0f} s)",
              file=sys.stderr, flush=True)
    load_after = [round(x, 2) for x in os.getloadavg()]
    print(f"load average after: {' '.join(f'{x:.2f}' for x in load_after)}")
    print(f"{'photo':>10} {'backend':>12} {'working':>8} {'model in':>9} {'array median':>13} {'file median':>12} "
          f"{'peak RSS':>10} {'RSS growth':>11} {'threads':>8} {'out of gamut':>13}")
    for r in rows:
        print(f"{r['photo']:>10} {r['backend']:>12} {r['working_size']:>8} {r['model_input']:>9} {r['array_median_s']:>12.3f}s "
              f"{r['file_median_s']:>11.3f}s {r['peak_rss_mib']:>7.0f} MiB {r['rss_growth_mib']:>7.0f} MiB {r['threads']:>8} "
              f"{100 * r['out_of_gamut_fraction']:>12.0f}%")
    for r in rows:
        if r["photo"] == "512x512" and r["default_size"]:
            ok = r["array_median_s"] < 0.3
            print(f"target: 512x512 at the default working size under 0.3 s with {r['threads']} thread(s), "
                  f"{r['backend']}: {'met' if ok else 'NOT met'} ({r['array_median_s']:.3f} s)")
    by_case: dict[tuple, dict[str, float]] = {}
    for r in rows:
        by_case.setdefault((r["photo"], r["working_size"], r["threads"]), {})[r["backend"]] = r["array_median_s"]
    for (photo, size, threads), times in by_case.items():
        if {"torch", "onnxruntime"} <= set(times):
            print(f"onnxruntime / torch, {photo} at {size} px, {threads} thread(s): "
                  f"{times['onnxruntime'] / times['torch']:.2f} (same run)")
    if args.json:
        context = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "colorkit": colorkit.__version__,
                   "torch": torch.__version__, "cpu": cpu, "cpus": os.cpu_count(), "model": model,
                   "load_average_before": load_before, "load_average_after": load_after}
        args.json.write_text(json.dumps({"runs": args.runs, **context, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
