"""Shared benchmark machinery: one worker process per case, interleaved timing rounds, peak-RSS growth, tables; and
the fixtures every benchmark builds the same way (a vocabulary, a model with random weights, its folder, decoding of
a fixed length: see "Fixtures" below).

A case runs in its own spawned process so that its memory is measured alone: the worker builds its step function,
records its resident set size (RSS) as the baseline, resets the kernel's RSS high-water mark, and from then on runs
steps on demand. The parent drives all workers of a group in alternating rounds (one step each, order reversed
every round), so machine noise lands on every case alike; workers that are not running wait on a pipe and use no CPU.
"""

from __future__ import annotations

import contextlib
import fnmatch
import multiprocessing as mp
import os
import platform
import resource
import statistics
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from transformers import MarianConfig, MarianMTModel

    from xlm_hf import XLMConfig, XLMForSeq2SeqLM, XLMTokenizerFast

REPO = Path(__file__).resolve().parent.parent
# The shared corpus beside the checkout (`../shared/data/po-parallel`); every benchmark also takes --corpus.
SHARED_CORPUS = REPO.parent / "shared" / "data" / "po-parallel"


# ----------------------------------------------------------------------------------------------------------------------
# Memory


def _status_kib(field_name: str) -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field_name} missing from /proc/self/status")


class PeakRSS:
    """Peak RSS growth of this process since construction, in bytes.

    Linux: writing 5 to /proc/self/clear_refs resets the high-water mark (VmHWM) to the current RSS, so the growth is
    VmHWM - RSS at construction. Elsewhere it falls back to ru_maxrss, which cannot be reset: the growth is then only
    seen when the measured work peaks above everything before it (model creation included).
    """

    def __init__(self):
        try:
            with open("/proc/self/clear_refs", "w", encoding="ascii") as refs:
                refs.write("5")
            self.method = "VmHWM after clear_refs"
            self.baseline_kib = _status_kib("VmRSS")
        except OSError:
            self.method = "ru_maxrss"
            self.baseline_kib = self._maxrss_kib()

    @staticmethod
    def _maxrss_kib() -> int:
        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return maxrss // 1024 if platform.system() == "Darwin" else maxrss  # macOS reports bytes

    def growth(self) -> int:
        peak = _status_kib("VmHWM") if self.method != "ru_maxrss" else self._maxrss_kib()
        return max(0, peak - self.baseline_kib) * 1024


@contextlib.contextmanager
def _native_stderr_silenced():
    """Kineto writes `profiler_start`/`profiler_stop` lines to file descriptor 2 whatever its log level."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "w", encoding="ascii") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def peak_tensor_bytes(step: Callable[[], None]) -> int:
    """Peak of live tensor bytes during one call of `step`, from torch.profiler's memory records.

    Allocator-independent (no malloc caching or fragmentation, unlike RSS): an op's net allocation counts at its
    start, a deallocation at its time. Temporaries freed inside one op are netted out, so this is a slight
    underestimate, alike for every model.
    """
    from torch.profiler import ProfilerActivity, profile

    with _native_stderr_silenced(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    changes = sorted(
        (event.time_range.start, event.cpu_memory_usage if event.name == "[memory]" else event.self_cpu_memory_usage)
        for event in prof.events()
        if event.name == "[memory]" or event.self_cpu_memory_usage
    )
    live = peak = 0
    for _, change in changes:
        live += change
        peak = max(peak, live)
    return peak


# ----------------------------------------------------------------------------------------------------------------------
# Workers


class Sample(NamedTuple):
    wall: float  # seconds
    cpu: float  # CPU seconds of this process, all threads
    other_load: float | None  # share of the machine's CPU time used by other processes (None: unknown)


class Meter:
    """Wall time, own CPU time, and the share of the machine's CPU time that other processes used in an interval.

    The benchmark may share its machine: a step during which someone else computed is not a measurement of ours
    (on 2 cores it can be 10x slower: an OpenMP barrier waits for a descheduled thread). Other processes' CPU time is
    the machine's busy time (Linux /proc/stat, in clock ticks) minus this process's; elsewhere it is unknown.
    """

    def __init__(self):
        self._tick = 1 / os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 0.01
        self._cpus = os.cpu_count() or 1

    def _machine_busy(self) -> float | None:
        try:
            with open("/proc/stat", encoding="ascii") as stat:
                fields = [int(x) for x in stat.readline().split()[1:]]
        except OSError:
            return None
        user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
        return (user + nice + system + irq + softirq + steal) * self._tick

    @staticmethod
    def _own_cpu() -> float:
        times = os.times()
        return times.user + times.system

    def start(self) -> None:
        self._busy, self._cpu, self._wall = self._machine_busy(), self._own_cpu(), time.perf_counter()

    def stop(self) -> Sample:
        wall, cpu, busy = time.perf_counter() - self._wall, self._own_cpu() - self._cpu, self._machine_busy()
        if busy is None or self._busy is None:
            return Sample(wall, cpu, None)
        return Sample(wall, cpu, max(0.0, busy - self._busy - cpu) / (wall * self._cpus))

    def wait_for_quiet(self, threshold: float, timeout: float, window: float = 1.0) -> None:
        """Sleep until other processes use at most `threshold` of the CPUs over `window` seconds, or `timeout` passes.

        Called by the (otherwise idle) parent between rounds, so rounds are not spent on a machine in use.
        """
        deadline = time.monotonic() + timeout
        while timeout > 0:
            self.start()
            time.sleep(window)
            load = self.stop().other_load
            if load is None or load <= threshold or time.monotonic() >= deadline:
                return


def _serve(conn, build: Callable[..., tuple[Callable[[], None], dict]], build_args: tuple, threads: int) -> None:
    """Worker loop: build the case, then answer ("run", n) with n Samples and ("report", tensor_peak) with its info
    (and the tensor peak of one more, profiled, step if tensor_peak)."""
    import torch

    try:
        torch.set_num_threads(threads)
        step, info = build(*build_args)
        memory, meter = PeakRSS(), Meter()
        conn.send(("ready", None))
        while True:
            try:
                command, arg = conn.recv()
            except EOFError:  # the parent is gone
                return
            if command == "run":
                samples = []
                for _ in range(arg):
                    meter.start()
                    step()
                    samples.append(meter.stop())
                conn.send(("ok", samples))
            elif command == "report":  # after the timed steps: the profiled step must not count in RSS or time
                report = {**info, "peak_rss_growth": memory.growth(), "memory_method": memory.method}
                if arg:
                    report["peak_tensor_bytes"] = peak_tensor_bytes(step)
                conn.send(("ok", report))
            else:  # "stop"
                return
    except Exception:  # noqa: BLE001 - the parent re-raises it with the worker's traceback
        conn.send(("error", traceback.format_exc()))


class Worker:
    """A spawned process holding one case; `run(n)` times n steps."""

    def __init__(self, name: str, build: Callable, build_args: tuple, threads: int):
        self.name = name
        context = mp.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_serve, args=(child, build, build_args, threads), daemon=True)
        self._process.start()

    def _answer(self):
        status, payload = self._conn.recv()
        if status == "error":
            raise RuntimeError(f"benchmark case {self.name} failed in its worker:\n{payload}")
        return payload

    def wait_ready(self) -> None:
        self._answer()

    def run(self, steps: int) -> list[Sample]:
        self._conn.send(("run", steps))
        return self._answer()

    def report(self, tensor_peak: bool = True) -> dict:
        self._conn.send(("report", tensor_peak))
        return self._answer()

    def stop(self) -> None:
        if self._process.is_alive():
            self._conn.send(("stop", None))
        self._process.join(timeout=30)


@dataclass
class Timing:
    samples: list[Sample] = field(default_factory=list)

    @property
    def times(self) -> list[float]:
        return [sample.wall for sample in self.samples]

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def best(self) -> float:
        return min(self.times)

    @property
    def median_cpu(self) -> float:
        return statistics.median(sample.cpu for sample in self.samples)

    @property
    def median_other_load(self) -> float | None:
        loads = [sample.other_load for sample in self.samples if sample.other_load is not None]
        return statistics.median(loads) if loads else None

    @property
    def spread(self) -> float:
        """Interquartile range relative to the median (noise indicator)."""
        if len(self.samples) < 2:
            return 0.0
        q1, _, q3 = statistics.quantiles(self.times, n=4, method="inclusive")
        return (q3 - q1) / self.median


def paired_speedups(baseline: Timing, other: Timing) -> tuple[float, float, float]:
    """Quartiles (q1, median, q3) over rounds of baseline time / other time. The steps of one round ran back to
    back, so the ratio cancels drifts in the machine's speed that a ratio of medians keeps; q1..q3 shows how far
    single rounds disagree."""
    ratios = [b.wall / o.wall for b, o in zip(baseline.samples, other.samples, strict=True)]
    if len(ratios) < 2:
        return ratios[0], ratios[0], ratios[0]
    q1, median, q3 = statistics.quantiles(ratios, n=4, method="inclusive")
    return q1, median, q3


def run_interleaved(
    cases: dict[str, tuple[Callable, tuple]],
    *,
    warmup: int,
    steps: int,
    threads: int,
    max_other_load: float = 1.0,
    max_rounds: int | None = None,
    max_wait: float = 0.0,
    tensor_peak: bool = True,
    log=print,
) -> dict[str, tuple[Timing, dict]]:
    """Rounds of one step per case, order reversed every round; return each case's timing and worker report.

    After `warmup` rounds, a round is kept when no step in it saw other processes use more than `max_other_load` of
    the machine's CPU time; rounds go on until `steps` are kept or `max_rounds` (default 3 x steps) were run, and
    if none was kept by then, all are. Before each round the parent waits (up to `max_wait` seconds in all) for the
    machine to be that quiet. The report of each worker includes the tensor peak of one more step if `tensor_peak`.
    """
    max_rounds = max_rounds or 3 * steps
    meter, wait_deadline = Meter(), time.monotonic() + max_wait
    workers = [Worker(name, build, args, threads) for name, (build, args) in cases.items()]
    try:
        for worker in workers:
            worker.wait_ready()
        for _ in range(warmup):
            for worker in workers:
                worker.run(1)
        kept = {worker.name: Timing() for worker in workers}
        dropped = {worker.name: Timing() for worker in workers}
        for round_idx in range(max_rounds):
            if len(kept[workers[0].name].samples) == steps:
                break
            waited = time.monotonic()
            meter.wait_for_quiet(max_other_load, timeout=max(0.0, wait_deadline - waited))
            waited = time.monotonic() - waited
            order = workers if round_idx % 2 == 0 else workers[::-1]
            samples = {worker.name: worker.run(1)[0] for worker in order}
            worst = max((s.other_load for s in samples.values() if s.other_load is not None), default=0.0)
            for name, sample in samples.items():
                (kept if worst <= max_other_load else dropped)[name].samples.append(sample)
            log(f"  round {round_idx + 1}"
                + (f" (after waiting {waited:.0f}s for a quiet machine)" if waited > 5 else "") + ": "
                + ", ".join(f"{name} {sample.wall:.3f}s" for name, sample in samples.items())
                + ("" if worst <= max_other_load else f"; dropped: other processes used {worst:.0%} of the CPUs"))
        if not kept[workers[0].name].samples:
            log(f"  no round under --max-other-load {max_other_load:.0%} in {max_rounds}: keeping all")
            kept = dropped
        return {worker.name: (kept[worker.name], worker.report(tensor_peak)) for worker in workers}
    finally:
        for worker in workers:
            worker.stop()


# ----------------------------------------------------------------------------------------------------------------------
# Fixtures: one vocabulary trainer, one random model (ours and its Marian reference), one model folder, one way to
# decode a fixed number of tokens. xlm_hf, torch and transformers are imported when called: the timing machinery
# above does not need them.


def corpus_texts(corpus: str | os.PathLike, pairs: Sequence[str] | None = None,
                 split: str = "train") -> dict[str, list]:
    """`{language: [Dataset, ...]}` of the `split` of every pair of `corpus` (a folder of SRC-TGT.SPLIT.tsv files,
    or "bundled"), or of `pairs`: the input `bench_vocabulary` trains on."""
    from xlm_hf.data.readers import load_translation_datasets, texts_by_language

    found = load_translation_datasets(str(corpus), pairs=list(pairs) if pairs else None, splits=[split])
    return texts_by_language(found, split=split)


def bench_vocabulary(texts: dict | Callable[[], dict], vocab_size: int, *, folder: str | os.PathLike | None = None,
                    seed: int = 0, **options) -> XLMTokenizerFast:
    """The benchmarks' vocabulary: `xlm_hf.train_tokenizer(texts, vocab_size=, seed=, **options)`, seeded and
    without a progress bar (`options`: languages, src_lang, tgt_lang, alpha, sample_size, ...).

    `texts` is what train_tokenizer takes (`{language: files, datasets or strings}`), or a function returning it,
    called only when there is something to train. With `folder`, the tokenizer is saved there, and a folder that
    already holds one (a rerun in the same work folder) is loaded instead of trained again."""
    from xlm_hf import XLMTokenizerFast
    from xlm_hf.data.tokenizer_training import train_tokenizer

    if folder is not None and (Path(folder) / "tokenizer.json").is_file():
        return XLMTokenizerFast.from_pretrained(str(folder))
    return train_tokenizer(texts() if callable(texts) else texts, vocab_size=vocab_size, seed=seed,
                           output_dir=folder, show_progress=False, **options)


def random_model(preset: str, tokenizer=None, *, seed: int = 0, **overrides) -> XLMForSeq2SeqLM:
    """Our model of `preset` with random weights, drawn after `torch.manual_seed(seed)`: every script and case that
    builds the same model gets the same weights (the CTranslate2 export is the very model the torch cases time). The
    vocabulary, special ids and languages come from `tokenizer`, or from `overrides` (`vocab_size=`, ...)."""
    import torch

    from xlm_hf import XLMForSeq2SeqLM, config_from_preset

    torch.manual_seed(seed)
    return XLMForSeq2SeqLM(config_from_preset(preset, tokenizer=tokenizer, **overrides))


def marian_config(ours: XLMConfig) -> MarianConfig:
    """A MarianConfig with the dimensions, dropouts, activation, embedding sharing and special ids of `ours` (an
    XLMConfig): only the architectures differ."""
    from transformers import MarianConfig

    return MarianConfig(
        vocab_size=ours.vocab_size,
        d_model=ours.d_model,
        encoder_layers=ours.encoder_layers,
        decoder_layers=ours.decoder_layers,
        encoder_attention_heads=ours.encoder_attention_heads,
        decoder_attention_heads=ours.decoder_attention_heads,
        encoder_ffn_dim=ours.encoder_ffn_dim,
        decoder_ffn_dim=ours.decoder_ffn_dim,
        max_position_embeddings=ours.max_position_embeddings,
        activation_function=ours.activation_function,  # some Marian checkpoints use swish; ours is gelu
        dropout=ours.dropout,
        attention_dropout=ours.attention_dropout,  # Marian's default is 0.0; match ours
        activation_dropout=ours.activation_dropout,
        scale_embedding=ours.scale_embedding,
        share_encoder_decoder_embeddings=True,
        tie_word_embeddings=True,
        pad_token_id=ours.pad_token_id,
        eos_token_id=ours.eos_token_id,
        bos_token_id=ours.bos_token_id,
        decoder_start_token_id=ours.decoder_start_token_id,
        forced_eos_token_id=None,  # no extra logits processor that ours does not have
    )


def random_marian(preset: str, tokenizer=None, *, seed: int = 0,
                  config: Callable[[XLMConfig], MarianConfig] = marian_config, **overrides) -> MarianMTModel:
    """The reference: transformers' `MarianMTModel` at the dims, dropouts and special ids of
    `random_model(preset, tokenizer, **overrides)`, its config made from ours by `config` (`marian_config`: the same
    in everything but the architecture, as the speed benchmarks want), random weights drawn after the same seed."""
    import torch
    from transformers import MarianMTModel

    from xlm_hf import config_from_preset

    torch.manual_seed(seed)
    return MarianMTModel(config(config_from_preset(preset, tokenizer=tokenizer, **overrides)))


def never_end(model, banned_ids: Sequence[int] = ()) -> None:
    """Make a random model decode exactly `max_new_tokens` tokens: an output bias of -1e4 on end-of-sentence (and on
    `banned_ids`), in the model's own output layer (ours: `lm_head.bias`; Marian: `final_logits_bias`; a CTranslate2
    export carries it too).

    This is the one trick of the benchmarks because it leaves the decoding cost as it is: the bias is added to
    every step's logits anyway, so generate runs the steps real decoding runs, with its ordinary stopping checks and
    no extra work. `min_new_tokens` (= max) instead adds two logits processors, each a copy and a `where` over the
    (rows, vocabulary) scores at every step, that real decoding does not have (about 10 ms of a 76 ms beam-4 step
    at base dims, on both sides); `bad_words_ids` / `suppress_tokens` add a processor likewise, and CTranslate2's
    `min_decoding_length` a masking step of its own. The weights, hence the time per step, are otherwise unchanged.
    `banned_ids`: e.g. every special id, so that a random model cannot decode its language tag over and over (an
    empty line once the special tokens are skipped)."""
    import torch

    bias = model.final_logits_bias[0] if hasattr(model, "final_logits_bias") else model.lm_head.bias
    if bias is None:
        raise ValueError("never_end needs an output bias: build the model with lm_head_bias=True (the default)")
    with torch.no_grad():
        bias[[model.config.eos_token_id, *banned_ids]] = -1e4


def save_model_folder(model, tokenizer, folder: str | os.PathLike) -> Path:
    """A model folder that `from_pretrained`, `xlm-hf translate` and `xlm-hf serve` load: the model's config and
    weights and the tokenizer's files, side by side. Written next to `folder`, then moved into place: the folder
    holds the whole model or nothing (a run cut short leaves no half folder to be reused), and a previous one (a
    rerun in the same work folder) is replaced."""
    from xlm_hf.atomic import staging_dir

    with staging_dir(folder) as staging:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
    return Path(folder)


def random_model_folder(folder: str | os.PathLike, preset: str, tokenizer, *, seed: int = 0,
                        banned_ids: Sequence[int] = (), **overrides) -> Path:
    """`random_model(preset, tokenizer, seed=, **overrides)` that decodes exactly max_new_tokens tokens (`never_end`,
    with `banned_ids`), saved with `tokenizer` in `folder` (`save_model_folder`): speed and memory do not depend on
    the weights."""
    model = random_model(preset, tokenizer, seed=seed, **overrides)
    never_end(model, banned_ids)
    return save_model_folder(model, tokenizer, folder)


# ----------------------------------------------------------------------------------------------------------------------
# Reporting


def machine_info() -> dict[str, Any]:
    import torch
    import transformers

    model_name = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            lines = cpuinfo.read().splitlines()
        model_name = next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
        flags = next(line.split(":", 1)[1].split() for line in lines if line.startswith("flags"))
        amx = "amx_bf16" in flags
    except (OSError, StopIteration):
        amx = None
    from xlm_hf import hardware

    return {
        "cpu": model_name,
        "cpus": os.cpu_count(),
        "amx_bf16": amx,
        "torch_sees": hardware.describe("cpu"),  # capability and native bf16, after ATEN_CPU_CAPABILITY / ONEDNN_MAX_CPU_ISA
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
    }


def add_round_options(parser, group: str) -> None:
    """--threads, --max-other-load, --max-rounds, --max-wait: the options of `run_interleaved`, for each `group` of
    cases (a mode, a setting) that is run in rounds."""
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads in every case")
    parser.add_argument("--max-other-load", type=float, default=0.05,
                        help="drop a round when other processes used more than this share of the CPUs (1 = keep all)")
    parser.add_argument("--max-rounds", type=int, help="give up waiting for quiet rounds after this many (3 x timed)")
    parser.add_argument("--max-wait", type=float, default=600.0,
                        help=f"seconds per {group} to wait, in all, for other processes to go quiet before rounds")


def machine_line(threads: int) -> tuple[dict[str, Any], str]:
    """`machine_info()` and the one-line summary a benchmark prints first."""
    machine = machine_info()
    return machine, (f"{machine['cpu']}, {machine['cpus']} CPUs; torch sees {machine['torch_sees']}; "
                     f"torch {machine['torch']}, transformers {machine['transformers']}, {threads} threads")


def selected_cases(patterns: str, models: Sequence[str], modes: Sequence[str]) -> dict[str, list[str]]:
    """Mode -> selected models, for cases named `model/mode`; a comma-separated glob pattern matches the case name
    (`xlm/greedy`) or the mode alone (`greedy`)."""
    globs = [p.strip() for p in patterns.split(",") if p.strip()]
    groups: dict[str, list[str]] = {}
    for mode in modes:
        chosen = [m for m in models if any(fnmatch.fnmatch(f"{m}/{mode}", g) or fnmatch.fnmatch(mode, g) for g in globs)]
        if chosen:
            groups[mode] = chosen
    if not groups:
        raise SystemExit(f"--cases {patterns!r} selects nothing; cases are {[f'{m}/{x}' for x in modes for m in models]}")
    return groups


def int_list(text: str) -> list[int]:
    """An argparse type: "0,1" -> [0, 1]."""
    return [int(part) for part in text.split(",")]


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)
