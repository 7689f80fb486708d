"""Training and inference speed of dmsps against a research-code-style baseline.

Usage::

    python benchmarks/speed.py --device cpu --out speed.json      # ~10 min on 2 cores
    python benchmarks/speed.py --quick --out smoke.json           # smoke run, seconds
    python benchmarks/speed.py --device cuda --compile --out gpu.json

One run measures, on the same synthetic data (slices of 200-260 px with scribbles, made
in code), for our training path and for ``benchmarks/baseline.py``:

- training images/s of the dual-decoder DMSPS step at 256x256 batch 24 and 128x128
  batch 12, data sampling and augmentation included (ours: ``SliceStore.sample`` +
  ``augment_batch`` + model + ``build_method("dmsps")`` + SGD through
  ``Trainer.set_lr`` / ``Trainer.train_step``, the loop's own code);
- achieved GFLOP/s (``torch.utils.flop_counter.FlopCounterMode`` on one step) and its
  share of this machine's matmul peak measured in the same run (fp32 sgemm on CPU; on
  CUDA a bf16 matmul and the 989 TFLOP/s dense bf16 figure of an H100/H200 SXM);
- the share of a step spent outside forward/backward/optimizer (data + augmentation);
- whole-volume inference slices/s (``ResizedSliceInferer`` against slice-by-slice);
- peak resident memory of each path (every path runs in its own worker process).

Each path runs in its own worker process (so process-wide settings such as threads or
the allocator, and peak memory, are per path); the parent process sends the workers
their steps in alternating rounds, so a change of machine load hits every path alike.
Warm-up steps are excluded and medians are reported (best in brackets).

Measured on the 2-core development VM (Xeon, AVX-512, 23 GB, torch 2.13 CPU), shared
with other engineers' jobs, so absolute numbers are noisy; the ratios below come from
one interleaved run each. fp32 sgemm peak there: 280-350 GFLOP/s on 2 threads when the
machine is quiet (~165 on 1 thread), ~110-165 when other jobs hold a core.

RESULTS (issue 5; 2026-11-26; ours = channels-last, eager, default threads, glibc
malloc tuned; variants change one thing of ours; img/s = median of 6 timed steps)

  mostly quiet machine (load 0.7-3.5)       256x256 b24          128x128 b12
    baseline (research style, 2 threads)     2.71 img/s  1.00x    15.13 img/s  1.00x
    ours                                     5.00        1.84x    20.00        1.32x
    ours, 1 thread                           2.70        1.00x    11.35        0.75x
    ours, OMP_WAIT_POLICY=PASSIVE            3.92        1.45x    16.76        1.11x
    ours, NCHW (channels_last off)           3.45        1.27x    16.82        1.11x
    ours, glibc malloc untuned               3.40        1.25x    20.17        1.33x
    ours: 145 GFLOP/s = 52 % of the 281 GFLOP/s sgemm measured in that run (both sizes);
    data + augmentation 0.4-3.5 % of a step (baseline's scipy loader: 0.5-1.6 %)
    inference, 4 volumes x 10 slices of 200-260 px: 30.4 slices/s vs 9.4 (3.25x)

  loaded machine (load 3-6: two other trainings)
    baseline                                 1.36        1.00x     2.30        1.00x
    ours (2 threads)                         1.75        1.28x     1.27        0.55x
    ours, 1 thread                           2.64        1.94x     7.40        3.22x
    ours, OMP_WAIT_POLICY=PASSIVE            2.70        1.98x     6.91        3.01x
    inference: 25.8 slices/s vs 7.4 (3.49x)

- glibc malloc (``tune_glibc_malloc``): by default every tensor above 32 MiB gets its own
  mmap and is unmapped on free, so each 256x256 b24 step page-faults its activations in
  again: ~1.8 M faults, 5-10 s of kernel time per step. Keeping the heap: 1.47x at
  256x256 b24, nothing at 128x128 b12 (its tensors stay under the threshold).
- channels-last: 1.45x (256) and 1.19x (128) against NCHW. Caveat: PyTorch's CPU
  BatchNorm for channels-last tensors sums in plain fp32 (see tests/test_step_equivalence).
- threads: with the machine to itself, 2 intra-op threads are 1.8x faster than 1; when
  other jobs compete for the cores, OpenMP's spinning barriers make 2 threads 1.5-6x
  slower than 1. OMP_WAIT_POLICY=PASSIVE fixes the loaded case but costs 16-22 % when
  quiet. Inter-op threads: not measured (``--interop``); the step forks no inter-op
  work, so none is expected.
- one process per core (DDP, gloo, 2 x 1 thread, 12 slices each; BatchNorm statistics
  then per half-batch): 1.85 img/s at 256 b24 on the loaded machine, against 1.20 for
  one process with 2 threads and 2.79 with 1 thread. Not worth it.
- torch.compile (inductor, CPU): 0.96x at 256 b24 and 0.94x at 128 b12 (1 thread),
  after 60-240 s of compiling: never pays back on CPU.
- in-place LeakyReLU (models/unet.py): ~8 % at 256 b24 and less memory.
- labels via ``max(0)`` instead of ``argmax(0)`` (``dmsps.inference.uncertainty.label_map``):
  8x faster argmax, ~8 % of whole-volume inference.
- conv+BN folding for inference (``dmsps.models.fold``, done once per inference copy):
  1.26x whole-volume inference (docs/speed.md; an earlier per-call variant gave +7 % and
  was dropped before the copy was made once).
- tried and dropped: bf16 autocast on this CPU (1.5x slower, no AMX), a matmul-based bilinear
  upsampling (slower than the channels-last kernel), cheaper dropout RNG (mt19937 is the
  cost; no cheaper exact sampler in PyTorch).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from dmsps.device import release_heap, tune_glibc_malloc
from dmsps.io.atomic import write_json

PROTO = "@@speed "
GPU_BF16_DENSE_PEAK_TFLOPS = 989.0  # H100 / H200 SXM dense bf16 (no sparsity)
HERE = Path(__file__).resolve().parent


# --- process-wide settings -------------------------------------------------------------
# --- synthetic data --------------------------------------------------------------------
def synthetic_volumes(
    count: int, depth: int, lo: int, hi: int, seed: int = 0
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(image, scribble) pairs of shape (Z, Y, X); Y, X in [lo, hi], MRI-like intensities.

    Concentric discs (LV in a myocardium ring, RV beside it) on a noisy background; a
    stroke per class through its median row; 4 (ignore) elsewhere.
    """
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        h, w = (int(v) for v in rng.integers(lo, hi + 1, 2))
        m = min(h, w)
        yy, xx = np.mgrid[:h, :w]
        image = np.empty((depth, h, w), np.float32)
        scrib = np.full((depth, h, w), 4, np.uint8)
        for k in range(depth):
            cy, cx = h / 2 + rng.uniform(-m / 20, m / 20), w / 2 + rng.uniform(-m / 20, m / 20)
            r = np.hypot(yy - cy, xx - cx)
            label = np.zeros((h, w), np.uint8)
            label[np.hypot(yy - cy, xx - (cx - 0.28 * m)) < 0.12 * m] = 1
            label[r < 0.2 * m] = 2
            label[r < 0.12 * m] = 3
            levels = np.array([80.0, 320.0, 160.0, 360.0], np.float32)
            image[k] = levels[label] + rng.normal(0.0, 25.0, (h, w)).astype(np.float32)
            for c in range(4):
                ys, xs = np.nonzero(label == c)
                row = int(np.median(ys))
                cols = xs[ys == row]
                scrib[
                    k, row, cols[len(cols) // 4 : max(len(cols) // 4 + 1, 3 * len(cols) // 4)]
                ] = c
        out.append((image, scrib))
    return out


class MemoryDataset:
    """The part of ``dmsps.data.layout.Dataset`` that ``load_slices`` uses, in memory."""

    num_channels = 1

    def __init__(self, volumes: list[tuple[np.ndarray, np.ndarray]]) -> None:
        from dmsps.data.layout import cardiac_meta

        self.volumes = volumes
        self.meta = cardiac_meta("synthetic")
        self.root = Path("<synthetic>")

    def cases(self) -> list[str]:
        return [str(i) for i in range(len(self.volumes))]

    def load_image(self, case: str):
        from dmsps.io.nifti import Geometry

        image = self.volumes[int(case)][0]
        return image[None], Geometry.from_spacing(image.shape, (1.0, 1.0, 1.0))

    def load_scribble(self, case: str, folder=None, shape=None):
        return self.volumes[int(case)][1]

    def load_label(self, case: str, shape=None):
        return None


# --- worker side -----------------------------------------------------------------------
@dataclass
class Spec:
    """What one worker process runs."""

    name: str = "ours"
    path: str = "ours"  # ours | baseline
    task: str = "train"  # train | infer
    size: int = 256
    batch: int = 24
    device: str = "cpu"
    threads: int = 0  # 0: PyTorch default
    interop: int = 0  # 0: PyTorch default
    channels_last: bool = True
    compile: bool = False
    amp: str = "auto"
    malloc: str = "tuned"  # tuned | default
    flush_denormal: bool = False
    fold_bn: bool = True  # inference: BatchNorm folded into the convolutions, as dmsps does
    workers: int = 0  # baseline DataLoader workers
    volumes: int = 12
    depth: int = 10
    lo: int = 200
    hi: int = 260
    seed: int = 0
    env: dict = field(default_factory=dict)  # extra environment of the worker process


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, n: int) -> dict:
    """Run ``fn`` (which returns its wall seconds) n times; also the process CPU seconds."""
    wall, cpu = [], []
    for _ in range(n):
        c0 = time.process_time()
        wall.append(fn())
        cpu.append(time.process_time() - c0)
    return {"step_s": wall, "cpu_s": cpu}


def _count_flops(fn) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


class OursTrain:
    """Our training step: the Trainer's own ``set_lr`` and ``train_step`` on a SliceSampler."""

    def __init__(self, spec: Spec) -> None:
        import torch

        from dmsps.config import TrainConfig
        from dmsps.models.unet import DualDecoderNet
        from dmsps.training.samplers import load_slices
        from dmsps.training.trainer import Trainer

        self.spec = spec
        ds = MemoryDataset(synthetic_volumes(spec.volumes, spec.depth, spec.lo, spec.hi, spec.seed))
        cfg = TrainConfig(
            batch_size=spec.batch,
            patch_size=spec.size,
            device=spec.device,
            threads=spec.threads,
            channels_last=spec.channels_last,
            compile=spec.compile,
            amp=spec.amp,
            seed=spec.seed,
            pl_loss="soft-ce",  # the loss baseline.py computes: same work on both paths
        )
        self.cfg = cfg
        self._tmp = tempfile.TemporaryDirectory(prefix="dmsps-speed-")
        self.trainer = Trainer(ds, cfg, Path(self._tmp.name), progress=False)
        self.device = self.trainer.device
        torch.manual_seed(cfg.seed)
        self.gen = torch.Generator().manual_seed(cfg.seed + 1)
        model = DualDecoderNet(self.trainer.model_cfg).to(self.device)
        if cfg.channels_last:
            model.to(memory_format=torch.channels_last)
        model.train()
        self.model = model
        self.opt = self.trainer.make_optimizer(model)
        self.store = load_slices(ds, ds.cases(), cfg.patch_size, progress=False).to(self.device)
        self.step_model = torch.compile(model) if cfg.compile else model
        self.it = 0

    def one(self, model=None) -> float:
        tr, cfg = self.trainer, self.cfg
        _sync(self.device)
        t0 = time.perf_counter()
        tr.set_lr(self.opt, self.it)
        terms = tr.train_step(model or self.step_model, self.opt, self.store, self.gen, self.it)
        self.it += 1
        if self.it % cfg.log_interval == 0:  # what the loop logs
            _ = {k: float(v) for k, v in terms.items()}
        _sync(self.device)
        return time.perf_counter() - t0

    def data_only(self) -> float:
        """The step's data part alone: sample + augment (same calls as ``train_step``)."""
        from dmsps.training.augment import augment_batch

        _sync(self.device)
        t0 = time.perf_counter()
        image, scrib, _, _ = self.store.sample(self.cfg.batch_size, self.gen)
        augment_batch(image, [scrib], [self.trainer.ignore], self.gen)
        _sync(self.device)
        return time.perf_counter() - t0

    def handle(self, cmd: dict) -> dict:
        n = int(cmd.get("n", 1))
        if cmd["cmd"] == "steps":
            return _timed(self.one, n)
        if cmd["cmd"] == "data":
            return {"data_s": [self.data_only() for _ in range(n)]}
        if cmd["cmd"] == "flops":
            return {"flops": _count_flops(lambda: self.one(self.model))}
        raise ValueError(cmd)


class BaselineTrain:
    def __init__(self, spec: Spec) -> None:
        sys.path.insert(0, str(HERE))
        from baseline import baseline_train_step_factory
        from dmsps.data.normalization import normalise

        vols = synthetic_volumes(spec.volumes, spec.depth, spec.lo, spec.hi, spec.seed)
        images, scribbles = [], []
        for image, scrib in vols:  # preprocessed once, as the research HDF5 files are
            norm = normalise(image[None])[0]
            for k in range(image.shape[0]):
                images.append(norm[k])
                scribbles.append(scrib[k])
        self.step, self.model = baseline_train_step_factory(
            images,
            scribbles,
            size=spec.size,
            batch=spec.batch,
            device=spec.device,
            num_workers=spec.workers,
            seed=spec.seed,
        )
        self.it = 0

    def handle(self, cmd: dict) -> dict:
        n = int(cmd.get("n", 1))
        if cmd["cmd"] in ("steps", "data"):
            out = []

            def one() -> float:
                out.append(self.step(self.it))
                self.it += 1
                return out[-1]["step_s"]

            res = _timed(one, n)
            res["data_s"] = [o["data_s"] for o in out]
            return res
        if cmd["cmd"] == "flops":
            flops = _count_flops(lambda: self.step(self.it))
            self.it += 1
            return {"flops": flops}
        raise ValueError(cmd)


class Infer:
    """Whole-volume inference, ours (``predict_volume``) or slice by slice (baseline)."""

    def __init__(self, spec: Spec) -> None:
        import torch

        from dmsps.data.normalization import normalise
        from dmsps.device import resolve_amp, resolve_device
        from dmsps.inference.inferers import ResizedSliceInferer
        from dmsps.models.unet import DualDecoderNet, ModelConfig

        self.spec = spec
        self.device = resolve_device(spec.device)
        vols = synthetic_volumes(spec.volumes, spec.depth, spec.lo, spec.hi, spec.seed + 7)
        self.images = [normalise(image[None]) for image, _ in vols]
        self.slices = sum(v.shape[1] for v in self.images)
        torch.manual_seed(spec.seed)
        model = DualDecoderNet(ModelConfig()).to(self.device)
        self.ours = spec.path == "ours"
        self.amp = resolve_amp(spec.amp, self.device) if self.ours else None
        if self.ours and spec.fold_bn:
            from dmsps.models.fold import fold_batchnorm

            model = fold_batchnorm(model, spec.channels_last)
        elif self.ours and spec.channels_last:
            model.to(memory_format=torch.channels_last)
        self.model = model.eval()
        self.inferer = ResizedSliceInferer(
            (spec.size, spec.size),
            device=self.device,
            amp=self.amp,
            channels_last=spec.channels_last,
        )

    def one(self) -> float:
        from dmsps.inference.uncertainty import label_map

        sys.path.insert(0, str(HERE))
        from baseline import baseline_infer_volume

        _sync(self.device)
        t0 = time.perf_counter()
        for image in self.images:
            if self.ours:
                probs = self.inferer(self.model, image)["main"]
                label_map(probs).numpy()
            else:
                baseline_infer_volume(self.model, image[0], self.spec.size, self.device)
        _sync(self.device)
        return time.perf_counter() - t0

    def handle(self, cmd: dict) -> dict:
        if cmd["cmd"] == "steps":
            return _timed(self.one, int(cmd.get("n", 1)))
        raise ValueError(cmd)


def _send(obj: dict) -> None:
    sys.stdout.write(PROTO + json.dumps(obj) + "\n")
    sys.stdout.flush()


def _precision(runner) -> str:
    from dmsps.device import precision_name

    return precision_name(getattr(getattr(runner, "trainer", runner), "amp", None))


def worker_main(spec_json: str) -> int:
    spec = Spec(**json.loads(spec_json))
    malloc_tuned = tune_glibc_malloc() if spec.malloc == "tuned" else False
    import torch

    if spec.interop > 0:
        torch.set_num_interop_threads(spec.interop)
    if spec.threads > 0:
        torch.set_num_threads(spec.threads)
    if spec.flush_denormal:
        torch.set_flush_denormal(True)
    t0 = time.perf_counter()
    if spec.task == "infer":
        runner = Infer(spec)
    elif spec.path == "ours":
        runner = OursTrain(spec)
    else:
        runner = BaselineTrain(spec)
    _send(
        {
            "ready": True,
            "setup_s": time.perf_counter() - t0,
            "threads": torch.get_num_threads(),
            "interop": torch.get_num_interop_threads(),
            "malloc_tuned": malloc_tuned,
            "slices": getattr(runner, "slices", None),
            # What amp=auto came to here: bf16 on CUDA and on CPUs with native bf16.
            "precision": _precision(runner),
        }
    )
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["cmd"] == "trim":
            release_heap()
            _send({})
            continue
        if cmd["cmd"] == "exit":
            cuda_peak = None
            if torch.cuda.is_available() and spec.device.startswith("cuda"):
                cuda_peak = torch.cuda.max_memory_allocated() / 2**20
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            _send({"peak_rss_mb": rss, "cuda_peak_mb": cuda_peak})
            return 0
        _send(runner.handle(cmd))
    return 0


# --- parent side -----------------------------------------------------------------------
class Worker:
    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        env = dict(os.environ)
        env.update(spec.env)
        env["PYTHONUNBUFFERED"] = "1"
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(asdict(spec))],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )

    def ready(self) -> dict:
        return self._read()

    def _read(self) -> dict:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith(PROTO):
                return json.loads(line[len(PROTO) :])
        code = self.proc.wait()
        raise RuntimeError(f"worker {self.spec.name} ({self.spec.path}) exited with {code}")

    def call(self, cmd: str, **kw) -> dict:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"cmd": cmd, **kw}) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> dict:
        out = self.call("exit")
        self.proc.wait()
        return out

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def matmul_peak(device: str, dtype_name: str, n: int, reps: int, inner: int) -> float:
    """Best achieved GFLOP/s of an n^3 matmul on this device (all threads)."""
    import torch

    dev = torch.device(device)
    dtype = getattr(torch, dtype_name)
    a = torch.randn(n, n, device=dev, dtype=dtype)
    b = torch.randn(n, n, device=dev, dtype=dtype)
    c = torch.empty(n, n, device=dev, dtype=dtype)
    torch.mm(a, b, out=c)
    best = math.inf
    for _ in range(reps):
        _sync(dev)
        t0 = time.perf_counter()
        for _ in range(inner):
            torch.mm(a, b, out=c)
        _sync(dev)
        best = min(best, (time.perf_counter() - t0) / inner)
    return 2 * n**3 / best / 1e9


def _loadavg() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def _cpu_pressure() -> str | None:
    """Linux PSI line 'some avg10=...': the share of time runnable tasks waited for a CPU."""
    with contextlib.suppress(OSError, IndexError):
        return Path("/proc/pressure/cpu").read_text().splitlines()[0]
    return None


def _cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _median(xs: list[float]) -> float:
    return float(statistics.median(xs))


def _parse_variant(text: str) -> tuple[str, dict]:
    """``name:key=value,...`` -> (name, overrides of the ours Spec); ``env.VAR=value`` too."""
    name, _, rest = text.partition(":")
    over: dict = {}
    types = {f: type(v) for f, v in asdict(Spec()).items()}
    for pair in filter(None, rest.split(",")):
        key, _, value = pair.partition("=")
        key = key.strip()
        if key.startswith("env."):
            over.setdefault("env", {})[key[4:]] = value.strip()
            continue
        if key not in types or key in ("name", "path", "task", "size", "batch", "device"):
            raise SystemExit(f"--variant: unknown or fixed field '{key}'")
        typ = types[key]
        if typ is bool:
            over[key] = value.strip().lower() in ("1", "true", "yes", "on")
        else:
            over[key] = typ(value.strip())
    return name.strip(), over


def run_phase(
    specs: list[Spec], warmup: int, rounds: int, steps: int, flops: bool, release: bool = False
) -> dict:
    """Start one worker per spec, warm them up, then time them in alternating rounds.

    ``release``: after its round each worker hands its free heap back (so that several
    tuned-malloc workers fit in memory together) and re-warms with one untimed step
    before its next round.
    """
    workers: list[Worker] = []
    results: dict[str, dict] = {}
    load0 = _loadavg()
    try:
        for spec in specs:  # start together; each reports when its setup is done
            workers.append(Worker(spec))
        for w in workers:
            spec = w.spec
            res = results[spec.name] = {"spec": asdict(spec), **w.ready()}
            t0 = time.perf_counter()
            w.call("steps", n=warmup)
            res["warmup_s"] = time.perf_counter() - t0
            if flops:
                res["flops_per_step"] = w.call("flops")["flops"]
                w.call("steps", n=1)  # settle again after the counted step
            if release:
                w.call("trim")
            res["step_s"], res["cpu_s"], res["data_s"] = [], [], []
        for _ in range(rounds):
            for w in workers:
                if release:
                    w.call("steps", n=1)
                out = w.call("steps", n=steps)
                if release:
                    w.call("trim")
                for key in ("step_s", "cpu_s", "data_s"):
                    results[w.spec.name][key] += out.get(key, [])
        for w in workers:
            if w.spec.path == "ours" and w.spec.task == "train":
                results[w.spec.name]["data_s"] = w.call("data", n=max(2, rounds))["data_s"]
        for w in workers:
            results[w.spec.name].update(w.close())
    finally:
        for w in workers:
            w.kill()
    for res in results.values():
        res["load_before"], res["load_after"] = load0, _loadavg()
    return results


def summarise_train(
    res: dict, batch: int, peak_gflops: float, peak_label: str, measured_peak: float | None = None
) -> dict:
    med = _median(res["step_s"])
    out = {
        "images_per_s": batch / med,
        "images_per_s_best": batch / min(res["step_s"]),
        "step_s_median": med,
        "step_s": res["step_s"],
        "cpu_s_median": _median(res["cpu_s"]),
        "data_s_median": _median(res["data_s"]) if res["data_s"] else None,
        "data_share": (_median(res["data_s"]) / med) if res["data_s"] else None,
        "warmup_s": res["warmup_s"],
        "setup_s": res["setup_s"],
        "threads": res["threads"],
        "interop_threads": res["interop"],
        "malloc_tuned": res["malloc_tuned"],
        "precision": res.get("precision", "fp32"),
        "peak_rss_mb": res["peak_rss_mb"],
        "cuda_peak_mb": res["cuda_peak_mb"],
        "settings": res["spec"],
        "load_before": res["load_before"],
        "load_after": res["load_after"],
    }
    if "flops_per_step" in res:
        gflops = res["flops_per_step"] / med / 1e9
        out.update(
            gflop_per_image=res["flops_per_step"] / batch / 1e9,
            gflops_achieved=gflops,
            peak_fraction=gflops / peak_gflops,
            peak_reference=peak_label,
        )
        if measured_peak:
            out["measured_matmul_peak_fraction"] = gflops / measured_peak
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, a smoke run")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument("--compile", action="store_true", help="torch.compile our model")
    parser.add_argument("--no-channels-last", action="store_true", help="run ours in NCHW instead")
    parser.add_argument("--threads", type=int, default=0, help="our intra-op threads (0: default)")
    parser.add_argument("--interop", type=int, default=0, help="our inter-op threads (0: default)")
    parser.add_argument(
        "--malloc",
        choices=["tuned", "default"],
        default="tuned",
        help="our process: glibc malloc tuned (tune_glibc_malloc) or left as is",
    )
    parser.add_argument(
        "--baseline-workers",
        type=int,
        default=None,
        help="baseline DataLoader workers (default: 0 on cpu, 8 on cuda)",
    )
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds per path")
    parser.add_argument("--steps", type=int, default=None, help="steps per round")
    parser.add_argument("--warmup", type=int, default=None, help="warm-up steps per path")
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME:K=V,...",
        help="extra configuration of our path timed alongside (e.g. nchw:channels_last=0)",
    )
    parser.add_argument("--no-infer", action="store_true", help="skip the inference phase")
    parser.add_argument("--no-train", action="store_true", help="skip the training phase")
    parser.add_argument(
        "--settings",
        default=None,
        help="training settings as SIZExBATCH,... (default 256x24,128x12)",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker_main(args.worker)

    import torch

    cuda = args.device == "cuda"
    if cuda and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available here")
    if args.quick:
        settings = [(32, 2)]
        data = dict(volumes=2, depth=2, lo=24, hi=40)
        warmup, rounds, steps = 1, 1, 1
        infer_size = 32
        # One thread everywhere: a smoke run must not stall on a busy machine
        # (OpenMP threads spin against other jobs' threads).
        torch.set_num_threads(1)
        args.threads = args.threads or 1
    else:
        settings = [(256, 24), (128, 12)]
        data = dict(volumes=12, depth=10, lo=200, hi=260)
        warmup, rounds, steps = (5, 5, 10) if cuda else (2, 3, 2)
        infer_size = 256
    if args.settings:
        settings = [tuple(int(v) for v in s.lower().split("x")) for s in args.settings.split(",")]
    if args.no_train:
        settings = []
    warmup = args.warmup if args.warmup is not None else warmup + (2 if args.compile else 0)
    rounds = args.rounds or rounds
    steps = args.steps or steps
    base_workers = args.baseline_workers
    if base_workers is None:
        base_workers = min(8, os.cpu_count() or 1) if cuda else 0

    report: dict = {
        "machine": {
            "cpu": _cpu_name(),
            "cores": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "device": torch.cuda.get_device_name() if cuda else "cpu",
            "default_threads": torch.get_num_threads(),
            "load_start": _loadavg(),
            "cpu_pressure_start": _cpu_pressure(),
        },
        "quick": args.quick,
    }

    # Peak: best of a few matmuls, measured in this (idle) parent process.
    n = 512 if args.quick else (8192 if cuda else 4096)
    peak: dict = {
        "fp32_matmul_gflops": matmul_peak(args.device, "float32", n, 4, 10 if cuda else 1)
    }
    if cuda:
        peak["bf16_matmul_gflops"] = matmul_peak(args.device, "bfloat16", n, 4, 20)
        peak["bf16_dense_peak_gflops"] = GPU_BF16_DENSE_PEAK_TFLOPS * 1e3
        peak_gflops, peak_label = peak["bf16_dense_peak_gflops"], "989 TFLOP/s dense bf16"
    else:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        peak["fp32_matmul_gflops_1thread"] = matmul_peak("cpu", "float32", min(n, 2048), 4, 1)
        torch.set_num_threads(threads)
        peak_gflops, peak_label = peak["fp32_matmul_gflops"], f"fp32 {n}^3 matmul, all threads"
    peak["matmul_n"] = n
    report["peak"] = peak

    ours_base = dict(
        device=args.device,
        threads=args.threads,
        interop=args.interop,
        channels_last=not args.no_channels_last,
        compile=args.compile,
        malloc=args.malloc,
        **data,
    )
    variants = [_parse_variant(v) for v in args.variant]
    report["train"] = []
    for size, batch in settings:
        specs = [
            Spec(
                name="baseline",
                path="baseline",
                size=size,
                batch=batch,
                device=args.device,
                workers=base_workers,
                channels_last=False,
                malloc="default",
                threads=1 if args.quick else 0,
                **data,
            ),
            Spec(name="ours", path="ours", size=size, batch=batch, **ours_base),
        ]
        for name, over in variants:
            specs.append(
                Spec(name=name, path="ours", size=size, batch=batch, **{**ours_base, **over})
            )
        res = run_phase(specs, warmup, rounds, steps, flops=True, release=len(specs) > 2)
        entry = {"size": size, "batch": batch}
        for name, r in res.items():
            entry[name] = summarise_train(
                r, batch, peak_gflops, peak_label, peak.get("bf16_matmul_gflops")
            )
        base_ips = entry["baseline"]["images_per_s"]
        entry["ratio"] = {
            name: entry[name]["images_per_s"] / base_ips for name in res if name != "baseline"
        }
        report["train"].append(entry)
        _save(report, args.out)  # a run cut short (e.g. by a time limit) keeps what it has

    if not args.no_infer:
        inf_data = (
            dict(volumes=1, depth=2, lo=24, hi=40)
            if args.quick
            else dict(volumes=4, depth=10, lo=200, hi=260)
        )
        specs = [
            Spec(
                name="baseline",
                path="baseline",
                task="infer",
                size=infer_size,
                device=args.device,
                channels_last=False,
                malloc="default",
                threads=1 if args.quick else 0,
                **inf_data,
            ),
            Spec(
                name="ours", path="ours", task="infer", size=infer_size, **{**ours_base, **inf_data}
            ),
        ]
        for name, over in variants:
            specs.append(
                Spec(
                    name=name,
                    path="ours",
                    task="infer",
                    size=infer_size,
                    **{**ours_base, **inf_data, **over},
                )
            )
        res = run_phase(specs, 1, rounds, 1, flops=False)
        entry = {"size": infer_size}
        for name, r in res.items():
            med = _median(r["step_s"])
            entry[name] = {
                "slices_per_s": r["slices"] / med,
                "slices_per_s_best": r["slices"] / min(r["step_s"]),
                "slices": r["slices"],
                "pass_s": r["step_s"],
                "peak_rss_mb": r["peak_rss_mb"],
                "cuda_peak_mb": r["cuda_peak_mb"],
                "settings": r["spec"],
            }
        base_sps = entry["baseline"]["slices_per_s"]
        entry["ratio"] = entry["ours"]["slices_per_s"] / base_sps
        entry["variant_ratio"] = {
            name: entry[name]["slices_per_s"] / base_sps
            for name in res
            if name not in ("baseline", "ours")
        }
        report["infer"] = entry
    report["machine"]["load_end"] = _loadavg()
    report["machine"]["cpu_pressure_end"] = _cpu_pressure()

    print(format_table(report))
    _save(report, args.out)
    return 0


def _save(report: dict, out: Path | None) -> None:
    if out:
        write_json(out, report)  # atomic, creates the folder


def format_table(report: dict) -> str:
    m, p = report["machine"], report["peak"]
    lines = [
        f"machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']}, device {m['device']}",
        f"load average (1/5/15 min) at start {m['load_start']}, at end {m.get('load_end')}",
        f"fp32 matmul peak ({p['matmul_n']}^3, all threads): {p['fp32_matmul_gflops']:.0f} GFLOP/s"
        + (
            f"; 1 thread: {p['fp32_matmul_gflops_1thread']:.0f}"
            if "fp32_matmul_gflops_1thread" in p
            else ""
        ),
    ]
    if "bf16_matmul_gflops" in p:
        lines.append(
            f"bf16 matmul measured: {p['bf16_matmul_gflops'] / 1e3:.0f} TFLOP/s; "
            f"dense bf16 peak taken as {p['bf16_dense_peak_gflops'] / 1e3:.0f} TFLOP/s"
        )
    head = (
        f"{'setting':<14}{'path':<12}{'img/s':>8}{'(best)':>8}{'ratio':>7}{'GFLOP/s':>9}"
        f"{'%peak':>7}{'data%':>7}{'cpu s':>7}{'RSS MB':>8}{'warm s':>8}"
    )
    lines += ["", "training (median of timed steps; data% = sampling + augmentation)", head]
    for e in report["train"]:
        label = f"{e['size']}x{e['size']} b{e['batch']}"
        for name, r in e.items():
            if not isinstance(r, dict) or "images_per_s" not in r:
                continue
            ratio = e["ratio"].get(name, 1.0)
            share = r["data_share"]
            prec = r.get("precision", "fp32")
            shown = name if prec == "fp32" else f"{name}({prec})"
            lines.append(
                f"{label:<14}{shown:<12}{r['images_per_s']:>8.2f}{r['images_per_s_best']:>8.2f}"
                f"{ratio:>6.2f}x{r.get('gflops_achieved', float('nan')):>9.1f}"
                f"{100 * r.get('peak_fraction', float('nan')):>6.1f}%"
                f"{'' if share is None else f'{100 * share:.1f}%':>7}"
                f"{r['cpu_s_median']:>7.2f}{r['peak_rss_mb']:>8.0f}{r['warmup_s']:>8.1f}"
            )
            label = ""
        gf = next(
            (
                r["gflop_per_image"]
                for r in e.values()
                if isinstance(r, dict) and "gflop_per_image" in r
            ),
            None,
        )
        if gf:
            lines.append(f"{'':<14}({gf:.2f} GFLOP per image, forward + backward)")
    if "infer" in report:
        e = report["infer"]
        lines += [
            "",
            f"inference, whole volumes at {e['size']}x{e['size']}",
            f"{'':<14}{'path':<12}{'slices/s':>9}{'(best)':>8}{'ratio':>7}{'RSS MB':>8}",
        ]
        ratios = {"baseline": 1.0, "ours": e["ratio"], **e.get("variant_ratio", {})}
        for name, ratio in ratios.items():
            r = e[name]
            lines.append(
                f"{'':<14}{name:<12}{r['slices_per_s']:>9.2f}{r['slices_per_s_best']:>8.2f}"
                f"{ratio:>6.2f}x{r['peak_rss_mb']:>8.0f}"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
