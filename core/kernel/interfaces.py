"""The five component interfaces every plugin implements.

Conventions shared by all of them (see :mod:`colorkit.kernel.color`):

* images are batched ``B x C x H x W`` float tensors;
* ``l`` is the normalised lightness, ``L* / 50 - 1``, in ``[-1, 1]``;
* colour is normalised ``a* / 110`` and ``b* / 110`` (and ``L`` as above for 3-channel output);
* RGB images handed to metrics are floats in ``[0, 1]``.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from colorkit.kernel.color import as_lab

OutputSpace = Literal["ab", "lab"]
#: What a generator's training-mode output is, and what a loss trains on: ``"colour"`` (the
#: output space) or ``"ab_bins"`` (logits over the a*b* cells of :mod:`colorkit.kernel.abbins`).
TrainingOutput = Literal["colour", "ab_bins"]

#: The attribute :func:`keep_init` sets; ``train.init=he`` leaves a module that has it as it is.
KEEP_INIT = "colorkit_keep_init"


def keep_init(module: nn.Module) -> nn.Module:
    """Mark ``module`` (and everything inside it) as initialised by its plugin, so that
    ``train.init=he`` does not overwrite it: a zero output layer that makes step 0 predict the
    "no colour" floor, say. Returns the module, so it can wrap a constructor call. A whole
    generator or discriminator can say the same with ``initialises_itself = True``."""
    setattr(module, KEEP_INIT, True)
    return module


class Generator(nn.Module):
    """Maps the normalised L channel (``B x 1 x H x W``) to colour.

    ``output_space`` says what ``forward`` returns: ``"ab"`` (``B x 2 x H x W``; the input L is
    reused) or ``"lab"`` (``B x 3 x H x W``, the paper's choice). A generator must be fully
    convolutional; ``size_multiple`` is the number both input sides must be a multiple of.
    """

    output_space: OutputSpace = "ab"
    #: What :meth:`forward` returns in training mode (see :data:`TrainingOutput`); a loss whose
    #: ``trains_on`` is not ``"colour"`` needs a generator with the same value.
    training_output: TrainingOutput = "colour"
    size_multiple: int = 1
    #: True when the plugin's own initialisation must stand: ``train.init=he`` then leaves the
    #: whole generator alone (for one layer only, wrap it in :func:`keep_init`).
    initialises_itself: ClassVar[bool] = False

    def check_input_size(self, height: int, width: int) -> None:
        """Raise ``ValueError`` with a clear message when the generator cannot take this size."""
        m = self.size_multiple
        if height % m or width % m or height < m or width < m:
            raise ValueError(
                f"{type(self).__name__} needs both image sides to be a positive multiple of {m} "
                f"(got {height}x{width}); choose another size or a smaller depth"
            )

    @abc.abstractmethod
    def forward(self, l: torch.Tensor) -> torch.Tensor:  # noqa: E741
        """Predict normalised colour for the normalised L channel ``l``.

        In eval mode the result is always colour (``output_space``). In training mode a generator
        may return what its loss trains on instead (class logits over a*b* cells, say);
        :meth:`decode` then turns that into colour, differentiably."""

    def adopt_class_weights(self, weights: torch.Tensor) -> None:
        """Keep the per-class weights a classification loss trains with (:attr:`Loss.class_weights`),
        so that inference can undo their bias (logit adjustment). The default ignores them."""

    def decode(self, out: torch.Tensor) -> torch.Tensor:
        """The colour (``output_space``) of a training-mode :meth:`forward` output, with gradients:
        what colour losses, the discriminator and the logged ``train_l1`` see. The default is the
        output itself, for generators whose training output already is colour."""
        return out


class Discriminator(nn.Module):
    """Scores colour images given the grayscale condition.

    ``forward(l, lab)`` takes the condition ``l`` (``B x 1 x H x W``) and a full normalised
    L*a*b* image (``B x 3 x H x W``, real or generated) and returns logits: ``B x 1`` or a patch
    map ``B x 1 x h x w``. The sigmoid belongs to the loss, not the network.
    """

    #: As :attr:`Generator.initialises_itself`.
    initialises_itself: ClassVar[bool] = False

    @abc.abstractmethod
    def forward(self, l: torch.Tensor, lab: torch.Tensor) -> torch.Tensor:  # noqa: E741
        """Logits that ``lab`` is a real colouring of ``l``."""


@dataclass
class Prediction:
    """What a loss sees of one batch.

    ``pred`` is the generator's training-mode output and ``colour`` its colour
    (:meth:`Generator.decode`; the same tensor for most generators, omitted then); ``target`` is in
    the generator's output space (2 or 3 channels, normalised); ``fake_lab`` and ``real_lab`` are
    the full normalised L*a*b* images a discriminator takes. Colour losses compare ``colour`` with
    ``target``; a loss on another kind of output (class logits) reads ``pred``.
    """

    l: torch.Tensor
    pred: torch.Tensor
    target: torch.Tensor
    decoded: torch.Tensor | None = None

    @property
    def colour(self) -> torch.Tensor:
        return self.pred if self.decoded is None else self.decoded

    @property
    def fake_lab(self) -> torch.Tensor:
        return as_lab(self.l, self.colour)

    @property
    def real_lab(self) -> torch.Tensor:
        return as_lab(self.l, self.target)

    def detached(self) -> Prediction:
        decoded = None if self.decoded is None else self.decoded.detach()
        return Prediction(self.l, self.pred.detach(), self.target, decoded)


LossParts = dict[str, torch.Tensor]


class Loss(abc.ABC):
    """Training objective.

    Both methods return a dict of named scalar tensors; the key ``"total"`` is the one that is
    minimised, the other keys (``gan``, ``l1``, ``d_real``, ``d_fake`` ...) are logged.

    What figures need from a loss is part of the interface too: an adversarial loss gives its
    generator cost as :meth:`gan_term` and a legend as :attr:`gan_label`; Figure 1 plots every
    registered loss whose ``gan_term`` is not ``None``, built-in or third-party alike.
    """

    #: Whether training needs a discriminator for this loss.
    needs_discriminator: ClassVar[bool] = False
    #: Per-class weights a classification loss trains with (set by :meth:`prepare`), handed to the
    #: generator before training (:meth:`Generator.adopt_class_weights`); ``None`` for other losses.
    class_weights: torch.Tensor | None = None
    #: What the loss reads of the prediction: ``"colour"`` (``Prediction.colour``: any generator
    #: will do) or a generator's ``training_output`` such as ``"ab_bins"`` (``Prediction.pred``).
    trains_on: ClassVar[TrainingOutput] = "colour"
    #: How a figure names the adversarial term (Figure 1's legend, after the loss's registered
    #: name), e.g. ``r"$-\log D(G(z))$ (non-saturating)"``; empty: the name alone.
    gan_label: ClassVar[str] = ""

    def prepare(self, data: torch.utils.data.Dataset) -> None:
        """Called once before training with the train split (no augmentation; items are uint8
        RGB ``3 x H x W``): a loss that needs statistics of the data (the colour prior of a
        class-rebalanced loss) computes them here, deterministically, so that a resumed run
        computes the same. The trainer calls it only for a loss that overrides it (reading the
        split can cost a pass over the data)."""

    def gan_term(self, fake_logits: torch.Tensor) -> torch.Tensor | None:
        """The generator's adversarial cost at the discriminator's logits of generated images,
        averaged over them: the ``gan`` part of :meth:`generator_loss`, and what Figure 1 plots
        against ``D(G(z)) = sigmoid(logit)``. ``None`` (the default) for a loss without one."""
        return None

    @abc.abstractmethod
    def generator_loss(self, batch: Prediction, disc: Discriminator | None) -> LossParts:
        """The generator's loss for one batch (gradients flow into ``batch.pred``).

        ``disc`` is ``None`` for a loss that needs no discriminator, and for an adversarial loss
        during a reconstruction-only phase (``train.gan_start``): it then returns its
        reconstruction term alone, on the same scale as in the adversarial phase."""

    def discriminator_loss(self, batch: Prediction, disc: Discriminator) -> LossParts:
        """The discriminator's loss; ``batch.pred`` is already detached. Adversarial losses only."""
        raise NotImplementedError(f"{type(self).__name__} trains no discriminator")


class Dataset(abc.ABC):
    """Named splits of colour images at one working size.

    ``split(name, train=...)`` returns a ``torch.utils.data.Dataset`` whose items are ``uint8``
    RGB tensors ``3 x size x size``. Conversion to L*a*b* happens on whole batches on the
    training device, never per item. ``train=True`` enables training augmentation.

    Data has three roles, kept apart: ``train_split`` is trained on, ``val_split`` is what
    training reads for validation, the plateau schedule and the best checkpoint (model
    selection), and ``test_split`` is what ``colorkit eval`` and ``colorkit bench`` report on by
    default. The three must not share an image.
    """

    #: The split names this dataset has.
    splits: ClassVar[tuple[str, ...]] = ("train", "val", "test")
    #: The split trained on.
    train_split: ClassVar[str] = "train"
    #: The split model selection reads (in-training validation, plateau schedule, best.pt).
    val_split: ClassVar[str] = "val"
    #: The split results are reported on (the default of ``colorkit eval`` and ``bench``).
    test_split: ClassVar[str] = "test"

    @property
    @abc.abstractmethod
    def size(self) -> int:
        """The working image size (square, pixels)."""

    @abc.abstractmethod
    def split(self, name: str, train: bool = False) -> torch.utils.data.Dataset:
        """The items of split ``name``; ``train`` turns on augmentation."""

    def head(self, name: str, n: int) -> torch.utils.data.Dataset:
        """The first ``n`` items of split ``name``, in order, as ``split(name)`` (no augmentation)
        has them: what ``colorkit eval --limit N`` scores. The default reads the split and cuts
        it; a dataset that decodes its files up front overrides it to decode only those ``n``."""
        data = self.split(name, train=False)
        return torch.utils.data.Subset(data, range(min(n, len(data))))  # type: ignore[arg-type]

    @classmethod
    def example_options(cls, folder: Path) -> dict[str, Any]:
        """Options that build a tiny instance for contract tests, writing any files it needs
        under ``folder``. The default (no options) suits datasets that need no files."""
        return {}

    def check_split(self, name: str) -> None:
        """Raise a clear error for an unknown split name."""
        if name not in self.splits:
            from colorkit.kernel.errors import UsageError

            raise UsageError(
                f"dataset {type(self).__name__} has no split '{name}'; its splits are "
                f"{', '.join(self.splits)}"
            )


class Metric(abc.ABC):
    """A number accumulated over batches of RGB images (floats in ``[0, 1]``, ``B x 3 x H x W``).

    ``unit`` is printed beside the value; ``higher_is_better`` orders results and picks the best
    checkpoint.
    """

    unit: ClassVar[str] = ""
    higher_is_better: ClassVar[bool] = True

    @abc.abstractmethod
    def reset(self) -> None:
        """Forget everything accumulated."""

    @abc.abstractmethod
    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Accumulate one batch of predicted and ground-truth RGB images."""

    @abc.abstractmethod
    def compute(self) -> float:
        """The value over everything accumulated since the last reset."""

    def merge(self, other: Metric) -> None:
        """Add what ``other`` (the same metric with the same options, fed other images) has
        accumulated into this one, so that shards of one split evaluated in separate processes
        give the value of the whole split (distributed validation).

        The default adds every numeric attribute (``int``, ``float``, tensor) of ``other`` to
        this one's, which is right for metrics whose state is sums and counts, as every built-in
        one is. A metric with any other state (a list of values, a histogram of fixed size to
        concatenate, a running maximum) must override it."""
        if type(other) is not type(self):
            raise TypeError(f"cannot merge a {type(other).__name__} into a {type(self).__name__}")
        for key, value in vars(other).items():
            if isinstance(value, bool) or not isinstance(value, (int, float, torch.Tensor)):
                continue
            setattr(self, key, getattr(self, key) + value)
