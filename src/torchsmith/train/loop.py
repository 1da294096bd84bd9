"""The trainer: ``fit(model, data, config)`` -> :class:`TrainResult`.

An explicit loop (Lightning Fabric's style, not a callback maze). What makes it fast:

* the dataset lives on the device as bytes and batches are index gathers
  (:class:`~torchsmith.data.DeviceLoader`), with augmentation batched there;
* loss, correct and seen counts accumulate in a device tensor and are read
  once per ``log_every`` steps, so a step never waits for the device;
* optional bf16/fp16 autocast, channels_last and ``torch.compile``.

What makes it exact: every random draw has a saved source. The data order and
augmentation come from the loader's own generator (its state at the start of
the epoch is checkpointed, with the step reached), the torch/numpy/python RNGs
and the optimizer and scheduler states go through :mod:`torchsmith.checkpoint`.
On CPU a resumed run therefore ends bit-identical to one never interrupted.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from torchsmith.checkpoint import save
from torchsmith.contract import device_dtype, primary_output
from torchsmith.data import DataSplits, DeviceLoader
from torchsmith.data.batches import ArrayLoader, WindowLoader
from torchsmith.errors import ConfigError, DataError, TorchsmithError, TrainingError, describe_error, shorten
from torchsmith.init import init_weights
from torchsmith.train import sharding, shards
from torchsmith.train import state as run_state
from torchsmith.train.config import TrainConfig
from torchsmith.train.datasource import keyword_inputs, training_data
from torchsmith.train.distributed import (
    DEAD_RANK_HINT,
    DistInfo,
    all_reduce_sum,
    setup_distributed,
    teardown_distributed,
    wrap_ddp,
)
from torchsmith.train.eval import run_eval
from torchsmith.train.inputs import misfit, model_input
from torchsmith.train.metrics import plot_metrics, write_metrics
from torchsmith.train.optim import build_optimizer, build_scheduler
from torchsmith.train.progress import Reporter
from torchsmith.train.result import TrainResult
from torchsmith.train.tasks import batch_size_of, chunk, perplexity, run_eval_task
from torchsmith.train.tensorboard import TensorBoardLog, require_tensorboard

__all__ = ["fit", "resolve_device", "seed_everything"]


def resolve_device(name: str, info: DistInfo | None = None) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; under torchrun, this rank's GPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("--device cuda was asked for but CUDA is not available here; use --device cpu "
                              "(or auto)")
        return torch.device("cuda", info.local_rank if info is not None and info.enabled else
                            torch.cuda.current_device())
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, numpy's global RNG and torch's (CPU and every GPU) from one ``seed``.

    All three are saved in a run's training state, so all three start from the seed: two runs with the
    same seed and options write the same training-state files, whatever the process drew before.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)  # numpy takes 0 <= seed < 2**32 only
    torch.manual_seed(seed)


def _is_dist_failure(e: BaseException) -> bool:
    dist_error = getattr(torch.distributed, "DistError", None)
    if dist_error is not None and isinstance(e, dist_error):
        return True
    text = str(e).lower()
    return isinstance(e, RuntimeError) and any(
        s in text for s in ("gloo", "nccl", "connection closed", "connection reset", "timed out", "broken pipe"))


def fit(model: nn.Module, data: str | DataSplits | None = None, config: TrainConfig | None = None, *,
        reporter: Reporter | None = None, **overrides: Any) -> TrainResult:
    """Train ``model`` in place on ``data`` as ``config`` says.

    Under ``torchrun`` every rank calls this; rank 0 alone reports and writes files. The model ends on the
    training device, in the mode it came in, in the default memory format.

    Args:
        model: The module to train (in place).
        data: A dataset name (``"digits"``, ``"cifar10"``, ``"mnist"``, ``"fashion-mnist"``, ``"synthetic"``,
            or a folder of class sub-folders) or :class:`DataSplits`; default ``config.data``.
        config: The :class:`TrainConfig`; default ``TrainConfig()``.
        reporter: Receives progress (``torchsmith.train.make_reporter()`` picks a terminal or notebook bar);
            default silent.
        **overrides: Replace fields of ``config``: ``fit(model, "digits", epochs=3)``.

    Returns:
        The :class:`TrainResult`: the history (one dict per epoch), the global step, the run directory and the
        last and best checkpoints.

    Raises:
        ConfigError: ``model`` is not a module, an unknown config field or a bad value, or CUDA asked for
            where there is none.
        DataError: The data cannot be read or cannot be fitted to the model's input.
        TrainingError: Training itself failed (a non-finite loss, a failed rank, ``torch.compile`` failing).
    """
    if not isinstance(model, nn.Module):
        hint = f"; build it first: model = torchsmith.resolve_model({model!r})" if isinstance(model, str) else ""
        raise ConfigError(f"fit needs an nn.Module to train, not {type(model).__name__}{hint}")
    cfg = (config or TrainConfig())
    if overrides:
        cfg = cfg.replace(**overrides)
    if isinstance(data, str):
        cfg = cfg.replace(data=data)
    device_type = "cuda" if cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available()) else "cpu"
    info = setup_distributed(device_type)
    rep = reporter if (reporter is not None and info.is_main) else Reporter()
    was_training = model.training
    # Training batches all have one shape (drop_last), so letting cuDNN time its algorithms once pays
    # back at once; the global flag is put back as it was.
    cudnn_benchmark = torch.backends.cudnn.benchmark
    if device_type == "cuda":
        torch.backends.cudnn.benchmark = True
    run: _Run | None = None
    try:
        run = _Run(model, data if isinstance(data, DataSplits) else None, cfg, rep, info)
        return run.run()
    except TorchsmithError:
        raise
    except Exception as e:
        if info.enabled and _is_dist_failure(e):
            raise TrainingError(f"rank {info.rank}/{info.world_size}: distributed training failed "
                                f"({describe_error(e, 200)}); {DEAD_RANK_HINT}") from e
        if cfg.compile and type(e).__module__.startswith(("torch._dynamo", "torch._inductor")):
            raise TrainingError(f"torch.compile failed: {describe_error(e, 300)}; "
                                f"train without --compile") from e
        raise
    finally:
        if run is not None:
            run.close()
        torch.backends.cudnn.benchmark = cudnn_benchmark
        model.train(was_training)
        rep.close()
        teardown_distributed(info)


@dataclass
class _Tools:
    """What one training step uses, built once per run."""

    net: nn.Module  # the model, or its DDP / torch.compile wrapper
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: Any  # a GradScaler under fp16, else None
    autocast: torch.autocast
    criterion: nn.Module


class _Run:
    """One training run's state; ``run()`` is the loop."""

    def __init__(self, model: nn.Module, splits: DataSplits | None, cfg: TrainConfig, rep: Reporter,
                 info: DistInfo) -> None:
        self.model, self.cfg, self.rep, self.info = model, cfg, rep, info
        self.device = resolve_device(cfg.device, info)
        self.notes: list[str] = []
        if cfg.amp == "fp16" and self.device.type != "cuda":
            raise ConfigError("--amp fp16 needs CUDA; on CPU use --amp bf16 or --amp off")
        if cfg.amp == "bf16" and self.device.type == "cpu" and not _cpu_has_bf16():
            self.notes.append("this CPU has no native bf16 (no AVX512-BF16 or AMX): bf16 autocast emulates it "
                              "and trains several times slower than --amp off here")
        if cfg.sync_batchnorm and info.enabled and self.device.type != "cuda":
            raise ConfigError("--sync-batchnorm needs CUDA (torch's SyncBatchNorm runs on GPUs only); on CPU "
                              "leave it off and each rank normalises over its own part of the batch")
        # The data is fitted to the model's input (the contract's answer, or cfg.input_size when given).
        self.input = model_input(model, cfg.input_size, cfg.input_dtype)
        self.notes += self.input.notes
        td = training_data(model, self.input, splits if splits is not None else cfg.data, task=cfg.task,
                           seq_len=cfg.seq_len, data_dir=cfg.data_dir, num_samples=cfg.num_samples, seed=cfg.seed,
                           target=cfg.target, tokenizer=cfg.tokenizer, label_smoothing=cfg.label_smoothing)
        self.splits, self.task, self.seq_len = td.splits, td.task, td.seq_len
        splits = td.splits
        self.notes += td.notes + splits.notes
        self.strategy, why = sharding.choose_strategy(model, cfg.strategy, info.world_size, self.device,
                                                      cfg.optimizer)
        if info.enabled or cfg.strategy != "auto":
            self.notes.append(f"strategy {self.strategy}: {why}")
        self.template: nn.Module | None = None  # fsdp: the model's layout on meta, to consolidate into
        self.ckpt_blocks: list[nn.Module] = []
        classes = getattr(model, "num_classes", None)
        if self.task.name == "classification" and isinstance(classes, int) and classes != splits.num_classes:
            raise DataError(f"the model has {classes} outputs but {splits.name} has {splits.num_classes} classes; "
                            f"build it with num_classes={splits.num_classes} (--opt num_classes="
                            f"{splits.num_classes})")
        self.augment = splits.augment if cfg.augment == "auto" else cfg.augment
        self.out_dir = Path(cfg.out_dir) if cfg.out_dir else (Path(cfg.resume) if cfg.resume else None)
        self.input_dtype = torch.float32
        self.tb: TensorBoardLog | None = None
        if cfg.tensorboard and self.out_dir is None:
            raise ConfigError("TensorBoard events go to the run directory; give fit an out_dir, "
                              "e.g. out_dir='runs/mine'")
        if cfg.tensorboard:
            require_tensorboard()  # before anything is written
        # The checkpoint a resume continues from: named now, so every phase reads the same one.
        self.resume_path = run_state.resume_checkpoint(cfg.resume) if cfg.resume else None
        self.resumed_from: dict[str, int] | None = None  # epoch and step, once the state is restored
        self.train_seconds, self.train_images = 0.0, 0  # over the epochs this invocation trained

    def close(self) -> None:
        sharding.disable_checkpointing(self.ckpt_blocks)
        self.ckpt_blocks = []
        if self.tb is not None:
            self.tb.close()
            self.tb = None

    # ------------------------------------------------------------------ setup
    def _prepare_model(self) -> None:
        cfg, model = self.cfg, self.model
        seed_everything(cfg.seed)  # dropout and any other global-RNG use; restored exactly on resume
        if cfg.init is not None:
            init_weights(model, cfg.init, generator=torch.Generator().manual_seed(cfg.seed))
        if self.resume_path is not None and self.resume_path.suffix == ".safetensors":
            run_state.load_weights(model, self.resume_path)  # a sharded checkpoint loads once the model is sharded
        on_meta = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
        if on_meta:
            raise ConfigError(f"the model's tensors are on the meta device and hold no data ({shorten(on_meta, 1)}"
                              f"); materialise it "
                              f"first: model.to_empty(device='cpu'), then torchsmith.init_weights(model, ...) "
                              f"or load a checkpoint into it")
        model.to(self.device)
        dtype = device_dtype(model)[1]
        self.input_dtype = self.input.float_dtype or (dtype if dtype.is_floating_point else torch.float32)
        if cfg.channels_last:
            model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]

    def _spread(self) -> None:
        """Checkpointing of the blocks, then FSDP2 shards (the layout kept on meta for the consolidated file)."""
        if self.cfg.checkpointing:
            self.ckpt_blocks = sharding.enable_checkpointing(self.model)
            self.notes.append(f"activation checkpointing: {len(self.ckpt_blocks)} blocks recompute in backward")
        if self.strategy == "fsdp":
            self.template = sharding.meta_template(self.model)
            n = sharding.shard(self.model, bf16=self.cfg.amp == "bf16")
            self.notes.append(f"FSDP2: fully_shard on {n} repeated blocks and the root; each of "
                              f"{self.info.world_size} ranks holds 1/{self.info.world_size} of the parameters"
                              + (" (bf16 compute, fp32 reduction: MixedPrecisionPolicy)" if self.cfg.amp == "bf16"
                                 else ""))

    def _probe(self, loader: Any) -> None:
        """One forward on two test samples, so a misfit fails here with a clear message, not mid-epoch."""
        x, y = next(iter(loader.epoch()))
        x, y = _head(x, 2), y[:2]
        was = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                raw = self.task.forward(self.model, x, y)
        except TorchsmithError:
            raise
        except Exception as e:
            if self.splits.kind == "images":
                raise misfit(self.model, self.splits.name, self.splits.input_size, self.input, e) from e
            raise DataError(f"{type(self.model).__name__} cannot take {self.splits.name}'s inputs "
                            f"({_describe_batch(x)}): {describe_error(e)}") from e
        finally:
            self.model.train(was)
        try:
            out = primary_output(raw)  # a tensor, or the logits of a dict / ModelOutput / named tuple
        except TorchsmithError as e:
            raise DataError(f"the model returns a {type(raw).__name__} with no tensor in it but training needs "
                            f"its logits or predictions; make forward return them") from e
        self.task.check_output(out, y, self.splits.num_classes, self.splits.name)

    def _loaders(self) -> tuple[Any, Any]:
        cfg, info, s = self.cfg, self.info, self.splits
        train: Any = s.train  # a TokenStream, ArrayDataset or ImageDataset, by s.kind
        test: Any = s.test
        geo: dict[str, Any]
        if s.kind == "stream":
            t, geo = self.seq_len or 64, {"device": self.device, "rank": info.rank, "world_size": info.world_size}
            if cfg.batch_size % info.world_size:
                raise ConfigError(f"--batch-size {cfg.batch_size} is the global batch and must divide evenly among "
                                  f"{info.world_size} ranks; use a multiple of {info.world_size}")
            train_w = WindowLoader(train, batch_size=cfg.batch_size, seq_len=t, shuffle=True, seed=cfg.seed, **geo)
            windows = (len(test) - 1) // t
            if windows < info.world_size:
                raise DataError(f"{s.name}'s test split holds {windows} windows of {t} tokens, fewer than one per "
                                f"rank; use a shorter --seq-len or more text")
            cap = min(windows, 8 * cfg.batch_size) // info.world_size * info.world_size
            test_w = WindowLoader(test, batch_size=cfg.batch_size, seq_len=t, max_windows=cap, **geo)
            return train_w, test_w
        if s.kind == "arrays":
            kw = keyword_inputs(self.model, train.names)
            geo = {"device": self.device, "rank": info.rank, "world_size": info.world_size, "dtype": self.input_dtype,
                   "keywords": kw}
            eval_batch = -(-cfg.eval_batch_size // info.world_size) * info.world_size
            return (ArrayLoader(train, batch_size=cfg.batch_size, shuffle=True, drop_last=True, seed=cfg.seed, **geo),
                    ArrayLoader(test, batch_size=eval_batch, **geo))
        common = {"mean": s.mean, "std": s.std, "device": self.device, "rank": info.rank,
                  "world_size": info.world_size, "channels_last": cfg.channels_last, "dtype": self.input_dtype}
        if cfg.batch_size % info.world_size:
            raise ConfigError(f"--batch-size {cfg.batch_size} is the global batch and must divide evenly among "
                              f"{info.world_size} ranks; use a multiple of {info.world_size}")
        train = DeviceLoader(s.train, batch_size=cfg.batch_size, shuffle=True, drop_last=True, augment=self.augment,
                             padding=cfg.crop_padding, seed=cfg.seed, **common)  # type: ignore[arg-type]
        eval_batch = -(-cfg.eval_batch_size // info.world_size) * info.world_size
        test = DeviceLoader(s.test, batch_size=eval_batch, **common)  # type: ignore[arg-type]
        return train, test

    # ------------------------------------------------------------------ the loop
    def run(self) -> TrainResult:
        """Set up, train epoch by epoch (each ends with an eval and a checkpoint), then report."""
        if self.out_dir is not None and self.info.is_main and not self.cfg.resume:
            run_state.check_fresh_out_dir(self.out_dir)
        self._prepare_model()
        train_loader, test_loader = self._loaders()
        self._probe(test_loader)
        self._spread()
        tools = self._tools(len(train_loader))
        st = self._start(tools, train_loader)
        stopped = False
        for epoch in range(st.epoch, self.cfg.epochs):
            epoch_stopped, acc, imgs, epoch_time, t_epoch = self._train_epoch(epoch, st, tools, train_loader)
            self.train_seconds += epoch_time
            self.train_images += imgs
            if epoch_stopped:
                stopped = True
                break
            self._end_epoch(epoch, st, tools, train_loader, test_loader, acc, imgs, epoch_time, t_epoch)
            if self.cfg.max_steps is not None and st.global_step >= self.cfg.max_steps and epoch + 1 < self.cfg.epochs:
                stopped = True
                break
        return self._result(st, stopped)

    def _tools(self, steps_per_epoch: int) -> _Tools:
        """What a step uses: the (DDP/compiled) net, optimizer, schedule, loss scaler, autocast and loss."""
        cfg, model = self.cfg, self.model
        net: nn.Module = wrap_ddp(model, self.info, self.device, cfg.sync_batchnorm) if self.strategy == "ddp" \
            else model  # single process, or FSDP (sharded in place)
        if cfg.compile:
            net = torch.compile(net)  # type: ignore[assignment]
        optimizer = build_optimizer(model, cfg, self.device)
        return _Tools(
            net=net, optimizer=optimizer, scheduler=build_scheduler(optimizer, cfg, steps_per_epoch),
            scaler=_grad_scaler(self.device) if cfg.amp == "fp16" else None,
            autocast=torch.autocast(device_type=self.device.type, dtype=torch.bfloat16 if cfg.amp == "bf16" else
                                    torch.float16, enabled=cfg.amp != "off" and self.strategy != "fsdp"),
            criterion=nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing))  # kept for callers; see Task.loss

    def _start(self, tools: _Tools, train_loader: Any) -> run_state.RunState:
        """Where the run begins (restored on resume), with its config written and the displays started."""
        cfg, info = self.cfg, self.info
        st = run_state.RunState()
        if self.resume_path is not None and self.resume_path.suffix != ".safetensors":
            st = self._restore_shards(tools, train_loader)
        elif self.resume_path is not None:
            st = run_state.restore(self.resume_path, cfg, self.splits, tools.optimizer, tools.scheduler, tools.scaler,
                                   train_loader)
            if self.strategy == "fsdp":  # a whole-model checkpoint (one process or DDP) continued sharded
                sharding.shard_optimizer_state(tools.optimizer)
            self.notes.append(f"resumed from {self.resume_path} at epoch {st.epoch + 1}, step {st.step_in_epoch}")
        if self.resume_path is not None:
            self.resumed_from = {"epoch": st.epoch, "step": st.step_in_epoch}
            saved = st.saved_world_size
            if saved is not None and saved != info.world_size:
                self.notes.append(f"resuming a run saved by {saved} rank{'s' if saved > 1 else ''} on "
                                  f"{info.world_size}: the state is re-split and training continues, but not "
                                  f"bit-identically (the batch is split and its gradients summed in another order)")
        if self.out_dir is not None and info.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            (self.out_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2, default=str) + "\n")
        if cfg.tensorboard and self.out_dir is not None and info.is_main:
            # On resume, events a crashed run wrote after its checkpoint are dropped (steps past global_step).
            self.tb = TensorBoardLog(self.out_dir, purge_step=st.global_step + 1 if self.resume_path else None)
        self.rep.start(epochs=cfg.epochs, steps_per_epoch=len(train_loader), start_epoch=st.epoch,
                       start_step=st.step_in_epoch, notes=self.notes, unit=self.unit)
        return st

    @property
    def unit(self) -> str:
        return "tok" if self.task.name == "causal-lm" else "img" if self.splits.kind == "images" else "samples"

    def _restore_shards(self, tools: _Tools, train_loader: Any) -> run_state.RunState:
        assert self.resume_path is not None
        doc = shards.restore_shards(self.resume_path, self.model, tools.optimizer, tools.scheduler)
        st = run_state.state_from_extra(doc, self.resume_path, self.cfg, self.splits, train_loader)
        self.notes.append(f"resumed from {self.resume_path} (sharded) at epoch {st.epoch + 1}, step "
                          f"{st.step_in_epoch}")
        return st

    def _train_epoch(self, epoch: int, st: run_state.RunState, tools: _Tools,
                     train_loader: Any) -> tuple[bool, torch.Tensor, int, float, float]:
        """The steps of one epoch (from where a resume left it); (stopped, sums, images, seconds, start time)."""
        cfg, info, rep = self.cfg, self.info, self.rep
        steps = len(train_loader)
        tools.net.train()
        first = st.step_in_epoch if epoch == st.epoch else 0
        batches = train_loader.epoch(first)
        acc = torch.zeros(3, dtype=torch.float64, device=self.device)  # loss sum, correct, seen (this rank)
        if first and st.partial and info.is_main:  # the sums of every rank so far: counted once, on rank 0
            acc += torch.tensor(st.partial, dtype=torch.float64, device=self.device)
        if self.tb is not None and first and st.partial:
            self.tb.start_epoch(st.partial[0], st.partial[2])
        elif self.tb is not None:
            self.tb.start_epoch()
        t_epoch = t_read = time.perf_counter()
        epoch_time, seen_at_read = 0.0, float(acc[2]) if first else 0.0
        step, stopped = first, False
        for x, y in batches:
            try:
                loss, logits = self._step(tools, x, y)
            except TorchsmithError:
                raise
            except Exception as e:  # the probe ran at 2 samples: a size tied to the batch fails only here
                if self.info.world_size > 1:
                    raise  # under torchrun a failing step is usually another rank: the distributed handler says so
                raise TrainingError(f"the training step failed on a batch of {batch_size_of(x)} "
                                    f"({_describe_batch(x)}) at epoch {epoch + 1}, step {step + 1}: "
                                    f"{describe_error(e)}; the model ran on a batch of 2 before training, so a size "
                                    "may be tied to the batch (`torchsmith check` finds it)") from e
            step += 1
            st.global_step += 1
            with torch.no_grad():  # stays on the device: no sync here
                n = self.task.count(y)
                acc[0] += loss.detach().double() * n
                acc[1] += self.task.correct(logits, y)
                acc[2] += n
            last = step == steps
            stop_now = cfg.max_steps is not None and st.global_step >= cfg.max_steps
            if step % cfg.log_every == 0 or last or stop_now:
                loss_sum, correct, seen = acc.tolist()  # the one sync per interval
                now = time.perf_counter()
                epoch_time += now - t_read
                _check_finite(loss_sum, epoch, step, tools.optimizer)
                rate = (seen - seen_at_read) * info.world_size / max(now - t_read, 1e-9)
                rep.update(epoch=epoch + 1, step=step, loss=loss_sum / max(seen, 1),
                           acc=correct / max(seen, 1) if self.task.has_accuracy else math.nan, images_per_s=rate)
                if self.tb is not None:
                    self.tb.interval(st.global_step, loss_sum, seen)
                seen_at_read, t_read = seen, time.perf_counter()
            if not last and (stop_now or (cfg.save_every_steps and st.global_step % cfg.save_every_steps == 0)):
                now = time.perf_counter()
                epoch_time += now - t_read
                st.epoch, st.step_in_epoch, st.partial = epoch, step, all_reduce_sum(acc.clone(), info).tolist()
                st.data_rng = train_loader.epoch_rng_state()
                self._save(st, tools.optimizer, tools.scheduler, tools.scaler, best=False)
                t_read = time.perf_counter()
            if stop_now:
                stopped = not last
                break
        return stopped, acc, (step - first) * cfg.batch_size, epoch_time, t_epoch

    def _step(self, tools: _Tools, x: Any, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimisation step on batch ``(x, y)``; the loss and the logits."""
        cfg, optimizer, scaler = self.cfg, tools.optimizer, tools.scaler
        if cfg.grad_accum > 1:
            return self._accumulated_step(tools, x, y)
        with tools.autocast:
            logits = primary_output(self.task.forward(tools.net, x, y))  # a tensor, or a ModelOutput / dict's logits
            loss = self.task.loss(logits, y)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            if cfg.grad_clip:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            if cfg.grad_clip:
                nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
            optimizer.step()
        tools.scheduler.step()
        return loss, logits

    def _accumulated_step(self, tools: _Tools, x: Any, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch in ``grad_accum`` microbatches, gradients summed and synced over ranks on the last only."""
        cfg, optimizer, scaler = self.cfg, tools.optimizer, tools.scaler
        if batch_size_of(x) < cfg.grad_accum:
            raise ConfigError(f"--grad-accum {cfg.grad_accum} splits each rank's batch of {batch_size_of(x)} into "
                              f"microbatches; use a --batch-size of at least {cfg.grad_accum} per rank")
        xs, ys = chunk(x, cfg.grad_accum), list(y.chunk(cfg.grad_accum))
        total = self.task.count(y)
        optimizer.zero_grad(set_to_none=True)
        outs, loss_sum = [], torch.zeros((), device=self.device)
        for i, (xi, yi) in enumerate(zip(xs, ys)):
            with sharding.grad_sync(tools.net, i == len(xs) - 1):
                with tools.autocast:
                    out = primary_output(self.task.forward(tools.net, xi, yi))
                    part = self.task.loss(out, yi) * (self.task.count(yi) / total)  # a share of the batch's mean
                (scaler.scale(part) if scaler is not None else part).backward()
            outs.append(out.detach())
            loss_sum = loss_sum + part.detach().float()
        if scaler is not None and cfg.grad_clip:
            scaler.unscale_(optimizer)
        if cfg.grad_clip:
            nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        tools.scheduler.step()
        return loss_sum, torch.cat(outs)

    def _end_epoch(self, epoch: int, st: run_state.RunState, tools: _Tools, train_loader: Any,
                   test_loader: Any, acc: torch.Tensor, imgs: int, epoch_time: float,
                   t_epoch: float) -> None:
        """Reduce the epoch's sums over ranks, evaluate, record the row, checkpoint."""
        info = self.info
        all_reduce_sum(acc, info)
        loss_sum, correct, seen = acc.tolist()
        t_correct: float
        if self.task.name == "classification" and self.splits.kind == "images":
            t_loss, t_correct, t_count, _ = run_eval(self.model, test_loader, self.splits.num_classes,
                                                     autocast=tools.autocast, dist=info, given=self.input,
                                                     data_name=self.splits.name)
        else:
            t_loss, t_correct, t_count = run_eval_task(self.model, test_loader, self.task, self.splits.num_classes,
                                                       autocast=tools.autocast, dist=info)
        task = self.task
        row = {"epoch": epoch + 1, "step": st.global_step, "lr": tools.optimizer.param_groups[0]["lr"],
               "train_loss": loss_sum / max(seen, 1),
               "train_acc": correct / max(seen, 1) if task.has_accuracy else None,
               "test_loss": t_loss / max(t_count, 1),
               "test_acc": t_correct / max(t_count, 1) if task.has_accuracy else None,
               "images_per_s": imgs / epoch_time if epoch_time > 0 else 0.0,
               "seconds": time.perf_counter() - t_epoch}
        if task.name == "causal-lm":
            row.update(train_ppl=perplexity(row["train_loss"]), test_ppl=perplexity(row["test_loss"]),
                       tokens_per_s=row["images_per_s"] * (self.seq_len or 1))
        st.history.append(row)
        score = -row["test_loss"] if task.lower_loss_is_best else row["test_acc"]
        improved = st.best_acc is None or score > st.best_acc
        if improved:
            st.best_acc, st.best_epoch = score, epoch + 1
        st.epoch, st.step_in_epoch, st.partial = epoch + 1, 0, None
        st.data_rng = train_loader.get_rng_state()
        self._save(st, tools.optimizer, tools.scheduler, tools.scaler, best=improved)
        self.rep.epoch_end(row)
        if self.tb is not None:
            self.tb.epoch(row)

    def _result(self, st: run_state.RunState, stopped: bool) -> TrainResult:
        """The run's files (and curves), the model back in the default memory format, the result."""
        cfg, model = self.cfg, self.model
        files: dict[str, Path] = {}
        if self.strategy == "fsdp" and self.template is not None:
            full = shards.full_state(model)  # every rank gathers; rank 0 writes
            if self.out_dir is not None and self.info.is_main:
                shards.write_consolidated(self.template, full, self.out_dir / run_state.MODEL)
        elif self.out_dir is not None and self.info.is_main and (self.out_dir / run_state.MODEL).is_file():
            # A sharded run continued by one process or DDP: its consolidated file follows, never left stale.
            save(model, self.out_dir / run_state.MODEL)
        if self.out_dir is not None and self.info.is_main:
            files = run_state.files_in(self.out_dir)
            if cfg.plot and st.history:
                png = plot_metrics(self.out_dir, st.history, title=f"{type(model).__name__} on {self.splits.name}")
                if png is not None:
                    files["plot"] = png
                else:
                    self.notes.append("no curves.png: matplotlib is not installed (pip install 'torchsmith[plot]')")
        if cfg.channels_last:
            model.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
        return TrainResult(
            config=cfg, history=st.history, global_step=st.global_step, epochs_done=len(st.history),
            device=str(self.device), world_size=self.info.world_size, out_dir=self.out_dir,
            last_checkpoint=files.get("last") or files.get("model"), best_checkpoint=files.get("best"),
            best_epoch=st.best_epoch, stopped_early=stopped, task=self.task.name, seq_len=self.seq_len,
            best_test_acc=st.history[st.best_epoch - 1].get("test_acc") if st.best_epoch and
            len(st.history) >= st.best_epoch else None, resumed_from=self.resumed_from,
            train_seconds=self.train_seconds, train_images=self.train_images,
            data_mean=tuple(self.splits.mean), data_std=tuple(self.splits.std), files=files, notes=self.notes)

    def _save(self, st: run_state.RunState, optimizer: torch.optim.Optimizer, scheduler: Any, scaler: Any,
              best: bool) -> None:
        if self.out_dir is not None and self.strategy == "fsdp":  # every rank writes its shard
            extra = run_state.extra_for(st, self.cfg, self.splits, scaler, self.info.world_size)
            shards.save_shards(self.out_dir, st.global_step, self.model, optimizer, scheduler, extra,
                               rank=self.info.rank, world_size=self.info.world_size)
            if self.info.is_main and st.history:
                write_metrics(self.out_dir, st.history)
            return
        if self.out_dir is None or not self.info.is_main:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        extra = run_state.extra_for(st, self.cfg, self.splits, scaler, self.info.world_size)
        run_state.save_checkpoint(self.model, self.out_dir / run_state.LAST, optimizer, scheduler, extra)
        if best:
            run_state.save_checkpoint(self.model, self.out_dir / run_state.BEST, optimizer, scheduler, extra)
        if st.history:
            write_metrics(self.out_dir, st.history)


def _grad_scaler(device: torch.device) -> Any:
    amp = getattr(torch, "amp", None)
    if amp is not None and hasattr(amp, "GradScaler"):
        try:
            return amp.GradScaler(device.type)
        except TypeError:
            pass
    return torch.cuda.amp.GradScaler()


def _cpu_has_bf16() -> bool:
    """Whether oneDNN has native bf16 on this CPU (True where torch cannot tell)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return True


def _head(x: Any, n: int) -> Any:
    if isinstance(x, dict):
        return {k: v[:n] for k, v in x.items()}
    if isinstance(x, tuple):
        return tuple(v[:n] for v in x)
    return x[:n]


def _describe_batch(x: Any) -> str:
    def one(t: torch.Tensor) -> str:
        return f"{'x'.join(map(str, t.shape[1:])) or 'scalar'} {str(t.dtype).replace('torch.', '')}"
    if isinstance(x, dict):
        return ", ".join(f"{k}={one(v)}" for k, v in x.items())
    if isinstance(x, tuple):
        return ", ".join(one(v) for v in x)
    return one(x)


def _check_finite(loss_sum: float, epoch: int, step: int, optimizer: torch.optim.Optimizer) -> None:
    if not math.isfinite(loss_sum):
        lr = optimizer.param_groups[0]["lr"]
        raise TrainingError(f"the training loss became {loss_sum} in epoch {epoch + 1} by step {step} (lr {lr:.3g}); "
                            f"lower --lr, add --grad-clip 1.0, or train with --amp bf16 or off instead of fp16")

