"""The speech separation task: negative SI-SDR with PIT, SI-SDRi/SDRi on full utterances, wav predictions.

Training runs on the fixed-length crops the datamodule makes; validation, test and predict on full-length
utterances (``lengths`` gives the valid samples of each), optionally in overlapping segments
(:func:`~domains.speech.inference.separate`) when ``eval_segment_seconds`` is set. TensorBoard receives, for
the first ``log_audio_examples`` validation utterances of each epoch, the audio of the mixture, the
estimates (PIT-aligned) and the references, and one figure of their spectrograms.

Recipe (MossFormer via ClearerVoice-Studio, read in its code; set in ``configs/speech/*.yaml``): Adam
(lr 1.5e-4 for MossFormer), ``trainer.gradient_clip_val: 10``, and the learning rate halved after 5
epochs without validation improvement: ``lr_scheduler: lightning.pytorch.cli.ReduceLROnPlateau`` with
``monitor: val_loss, factor: 0.5, patience: 5``. ClearerVoice's solver has a bug there: on an epoch that
does not improve it overwrites ``best_val_loss`` with that worse value. The next epoch is then compared with
the bad one, so an epoch merely better than its predecessor (still worse than the true best) counts as an
improvement and resets the patience counter: with an oscillating validation loss the learning rate is never
halved, training never stops early, and "best" checkpoints follow the oscillation. ``ReduceLROnPlateau``
(and ``EarlyStopping``, the checkpoint callback) compare with the true best, which is what the recipe means.
(The solver also reloads the best checkpoint when halving; we keep training from the current weights.)
"""

from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_info
from matplotlib.figure import Figure
from torch import Tensor, nn

from core.attention import AttentionFactory
from core.training import BaseTask
from core.training.base_task import Stage
from domains.speech.audio import resample, write_audio
from domains.speech.inference import separate
from domains.speech.losses import PITResult, PITSISDRLoss
from domains.speech.metrics import SeparationMetrics
from domains.speech.models import ConvTasNet, SeparationNetworkFactory

__all__ = ["SeparationTask", "spectrogram_figure"]


class SeparationTask(BaseTask):
    """Monaural source separation: a mixture waveform in, one waveform per source out.

    ``num_sources`` and ``sample_rate`` come from the datamodule through the CLI; set them by hand only
    when using the task without one.

    Args:
        network: The network class (or a factory of one), called with ``num_sources`` and ``attention``:
            ``ConvTasNet`` (baseline), ``MossFormer`` / ``MossFormerSmall`` / ``MossFormerTiny``, or
            ``DualPathSeparator`` / ``DualPathTiny``; its own options are ``--model.network.*``.
            Default (None): ``ConvTasNet`` with the paper's sizes.
        attention: A token mixer for networks that take one (the dual-path separator's intra- and
            inter-chunk mixers), e.g. ``--model.attention=LinearAttention``.
        eval_segment_seconds: Separate validation, test and prediction audio in overlapping segments of
            this length (seconds) instead of one pass; None runs one pass over each whole utterance.
        eval_overlap: Overlap of neighbouring segments as a fraction of the segment.
        log_audio_examples: Validation utterances whose audio and spectrograms go to TensorBoard each epoch.
        perceptual_metrics: Also compute PESQ / STOI in validation and test when ``pesq`` / ``pystoi`` are
            installed.
        num_sources: Sources per mixture (linked from the data).
        sample_rate: The model's sample rate in Hz (linked from the data).
        pretrained: Checkpoint to initialise the weights from (fine-tuning).
    """

    monitor = "val_loss"
    mode = "min"

    def __init__(
        self,
        network: SeparationNetworkFactory | None = None,
        attention: AttentionFactory | None = None,
        eval_segment_seconds: float | None = None,
        eval_overlap: float = 0.5,
        log_audio_examples: int = 2,
        perceptual_metrics: bool = True,
        num_sources: int | None = None,
        sample_rate: int | None = None,
        pretrained: str | None = None,
    ) -> None:
        self.network_factory: SeparationNetworkFactory = network or ConvTasNet
        self.attention = attention
        super().__init__(pretrained=pretrained)
        # Training scores the crops the loss sees: SI-SDR(i) only (BSS-eval SDR and PESQ cost more).
        self.train_metrics = SeparationMetrics(self.hparams.sample_rate, sdr=False, perceptual=False)

    def configure_models(self) -> None:
        """Build the network for the linked number of sources."""
        hp = self.hparams
        self.require_linked("num_sources", "sample_rate")
        if not 0.0 < hp.eval_overlap < 1.0:
            raise ValueError(f"SeparationTask: eval_overlap must be in (0, 1), got {hp.eval_overlap}")
        if hp.eval_segment_seconds is not None and hp.eval_segment_seconds <= 0:
            raise ValueError(
                f"SeparationTask: eval_segment_seconds must be positive, got {hp.eval_segment_seconds}"
            )
        self.network: nn.Module = self.build_network(self.network_factory, num_sources=hp.num_sources)

    def configure_losses(self) -> None:
        """Negative SI-SDR with utterance-level PIT (silent references excluded and counted)."""
        self.criterion = PITSISDRLoss()

    def configure_metrics(self) -> SeparationMetrics:
        """SI-SDR(i), SDR(i), the mixture's values, PESQ/STOI when available, silent-source counts."""
        return SeparationMetrics(self.hparams.sample_rate, perceptual=self.hparams.perceptual_metrics)

    def forward(self, mixture: Tensor) -> Tensor:
        """Estimates ``(B, num_sources, T)`` of ``mixture (B, T)``, in segments if configured."""
        hp = self.hparams
        if self.training or hp.eval_segment_seconds is None:
            return self.network(mixture)
        segment = round(hp.eval_segment_seconds * hp.sample_rate)
        stride = int(getattr(self.network, "stride", 1))
        return separate(self.network, mixture, segment, round(segment * hp.eval_overlap), stride)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        """One optimisation step on a batch of crops."""
        mixture, sources = batch["mixture"], batch["sources"]
        estimates = self(mixture)
        result = self.criterion(estimates, sources)
        self.update_metrics("train", estimates, sources, mixture)
        return self.log_loss("train", result.loss, len(mixture))

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Separate full utterances; loss, metrics, and audio for the first few."""
        estimates, result = self._evaluate(batch, "val")
        if batch_idx < self.hparams.log_audio_examples:
            self._log_audio(batch, result.aligned(estimates))

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Separate full utterances; loss and metrics."""
        self._evaluate(batch, "test")

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        """The estimates of each file, cropped to its length (still at the model's rate)."""
        estimates = self(batch["mixture"])
        lengths = batch["lengths"].tolist()
        mixtures = [m[:n] for m, n in zip(batch["mixture"], lengths, strict=True)]
        return {
            "estimates": [e[:, :n].float().cpu() for e, n in zip(estimates, lengths, strict=True)],
            "mixture": [m.float().cpu() for m in mixtures],
            "name": batch.get("id") or [Path(p).stem for p in batch["path"]],
            "sample_rate": batch["sample_rate"],
        }

    def on_fit_start(self) -> None:
        """Say how evaluation works, once."""
        self._log_protocol()

    def on_test_start(self) -> None:
        """Say how evaluation works, once."""
        self._log_protocol()

    def write_prediction_batch(self, prediction: dict[str, Any], output_dir: Path) -> list[Path]:
        """Write ``<name>_s1.wav``, ``<name>_s2.wav``, ... per input file, at the file's own sample rate.

        ``<name>`` is the batch's ``id`` (unique per file: the example folder for the examples layout), else
        the file's stem.

        Scale-invariant training leaves each estimate's gain arbitrary; the estimates of a file are scaled
        by the one gain that makes their sum closest (least squares) to the mixture, so the files play at
        the mixture's level. They are written as 32-bit float wav (no clipping).

        Args:
            prediction: What :meth:`predict_step` returned for one batch.
            output_dir: Destination folder (checked by :class:`~core.training.PredictionWriter`).

        Returns:
            The files written.
        """
        written = []
        model_rate = int(self.hparams.sample_rate)
        for estimates, mixture, name, rate in zip(
            prediction["estimates"],
            prediction["mixture"],
            prediction["name"],
            prediction["sample_rate"],
            strict=True,
        ):
            total = estimates.sum(dim=0)
            gain = (total @ mixture) / (total @ total).clamp_min(1e-12)
            estimates = resample(estimates * gain, model_rate, int(rate))
            for k, estimate in enumerate(estimates, start=1):
                written.append(write_audio(output_dir / f"{name}_s{k}.wav", estimate, int(rate)))
        return written

    def _evaluate(self, batch: dict[str, Any], stage: Stage) -> tuple[Tensor, PITResult]:
        mixture, sources, lengths = batch["mixture"], batch["sources"], batch.get("lengths")
        estimates = self(mixture)
        result = self.criterion(estimates, sources, lengths)
        self.log_loss(stage, result.loss, len(mixture))
        self.update_metrics(stage, estimates, sources, mixture, lengths)
        return estimates, result

    def _log_audio(self, batch: dict[str, Any], aligned: Tensor) -> None:
        """Audio and spectrograms of the batch's first utterance (rank 0 only, never through ``self.log``)."""
        if self.trainer.sanity_checking or not self.trainer.is_global_zero:
            return
        loggers = [lg for lg in self.loggers if isinstance(lg, TensorBoardLogger)]
        if not loggers:
            return
        n = int(batch["lengths"][0]) if "lengths" in batch else batch["mixture"].shape[-1]
        name = str(batch["id"][0]) if "id" in batch else "example"
        rate = int(self.hparams.sample_rate)
        signals = {"mixture": batch["mixture"][0, :n]}
        signals |= {f"estimate{k + 1}": aligned[0, k, :n] for k in range(aligned.shape[1])}
        signals |= {f"reference{k + 1}": batch["sources"][0, k, :n] for k in range(aligned.shape[1])}
        for logger in loggers:
            for key, wave in signals.items():
                wave = wave.detach().float().cpu()
                peak = wave.abs().max().clamp_min(1e-8)  # add_audio expects [-1, 1]
                logger.experiment.add_audio(f"val_audio/{name}/{key}", wave / peak, self.global_step, rate)
        self.log_figure(f"val_spectrogram/{name}", lambda: spectrogram_figure(signals, rate, name))

    def _log_protocol(self) -> None:
        hp = self.hparams
        how = (
            "one pass per utterance"
            if hp.eval_segment_seconds is None
            else f"segments of {hp.eval_segment_seconds} s, overlap {hp.eval_overlap}"
        )
        rank_zero_info(
            f"evaluation protocol: full-length utterances at {hp.sample_rate} Hz, {how}; SI-SDR with "
            "utterance-level PIT; improvements over the mixture; silent references excluded and counted"
        )


def spectrogram_figure(signals: dict[str, Tensor], sample_rate: int, title: str) -> Figure:
    """Log-magnitude spectrograms (dB, 32 ms Hann windows, 8 ms hop) of named waveforms, one row each."""
    import matplotlib.pyplot as plt

    n_fft = max(16, round(0.032 * sample_rate))
    hop = max(1, n_fft // 4)
    fig, axes = plt.subplots(len(signals), 1, figsize=(7.0, 1.4 * len(signals)), sharex=True, squeeze=False)
    for ax, (key, wave) in zip(axes[:, 0], signals.items(), strict=True):
        wave = wave.detach().float().cpu()
        spec = torch.stft(wave, n_fft, hop, window=torch.hann_window(n_fft), return_complex=True).abs()
        db = 20 * torch.log10(spec.clamp_min(1e-5))
        extent = (0.0, wave.shape[-1] / sample_rate, 0.0, sample_rate / 2000)
        ax.imshow(
            db.numpy(), origin="lower", aspect="auto", cmap="magma", extent=extent, vmin=float(db.max()) - 80
        )
        ax.set_ylabel(f"{key}\nkHz", fontsize=7)
    axes[-1, 0].set_xlabel("s")
    fig.suptitle(title)
    fig.tight_layout()
    return fig
