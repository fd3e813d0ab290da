"""The posterior estimator on sbi: a mixture density network (MDN) over the scaled parameters, conditioned on the
:class:`~.embedding.LabelMapEmbedding` of an observation; training, sampling, and the weights file.

sbi's ``NPE`` (SNPE-C, Greenberg et al. 2019) trains it. Round 1 from the prior is plain maximum likelihood; later
rounds draw from the previous posterior, and because both the proposal and the estimator are Gaussian mixtures and
the prior is a box, sbi uses its closed-form ("non-atomic") proposal correction, which has none of the atomic
loss' leakage. The network object persists across rounds, so each round's training starts from the previous
round's weights (the thesis' warm start).

Observations are not z-scored by sbi (they already lie in [0, 1], and per-voxel z-scoring would divide by the
zero spread of voxels that never change); parameters are z-scored per dimension from the first training batch.
"""
from __future__ import annotations

import contextlib
import copy
import io
import warnings
from pathlib import Path

from ..errors import InputError
from ..files import atomic_path

WEIGHTS_KEYS = {"state_dict", "config", "names", "in_channels", "low", "high"}


class QuietTracker:
    """sbi's training-metrics tracker protocol, doing nothing (sbi's default writes TensorBoard logs into the
    working directory)."""

    log_dir = None

    def log_metric(self, name, value, step=None):
        pass

    def log_metrics(self, metrics, step=None):
        pass

    def log_params(self, params):
        pass

    def add_figure(self, name, figure, step=None):
        pass

    def flush(self):
        pass


def box_prior(low, high, device: str = "cpu"):
    """sbi's ``BoxUniform`` on [low, high] (scaled coordinates), float32, on ``device`` (the training device)."""
    import torch
    from sbi.utils import BoxUniform

    return BoxUniform(torch.as_tensor(low, dtype=torch.float32), torch.as_tensor(high, dtype=torch.float32),
                      device=device)


def density_estimator_builder(config: dict, in_channels: int):
    """sbi's builder of the MDN with our embedding (``posterior_nn(model="mdn", embedding_net=...)``)."""
    from sbi.neural_nets import posterior_nn

    from .embedding import LabelMapEmbedding

    embedding = LabelMapEmbedding(in_channels, config["observation"]["crop_size"],
                                  tuple(config["embedding"]["channels"]), int(config["embedding"]["features"]))
    return posterior_nn(model="mdn", embedding_net=embedding, z_score_theta="independent", z_score_x="none",
                        hidden_features=int(config["mdn"]["hidden_features"]),
                        num_components=int(config["mdn"]["components"]))


def make_trainer(prior, config: dict, in_channels: int, estimator=None, device: str = "cpu"):
    """sbi ``NPE`` with the MDN builder; ``estimator`` (e.g. the amortised network) to start from its weights;
    ``device``: where training runs (the data stay in CPU memory)."""
    import torch
    from sbi.inference import NPE

    torch.manual_seed(int(config["training"]["seed"]))
    trainer = NPE(prior=prior, density_estimator=density_estimator_builder(config, in_channels), device=device,
                  show_progress_bars=False, tracker=QuietTracker())
    if estimator is not None:
        # sbi builds its network on the first train() only when it has none: a copy of this one is trained further
        # (a copy, since the original stays the first round's proposal).
        trainer._neural_net = copy.deepcopy(estimator)
    return trainer


@contextlib.contextmanager
def _quiet():
    """sbi prints the loss variant and convergence, and warns about z-scoring image data: keep them off the
    command line's output (its JSON summary goes to stdout)."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def append_and_train(trainer, theta, x, proposal, config: dict, max_epochs: int | None = None):
    """Add one round's simulations (``proposal`` None: drawn from the prior) and train; returns
    ``(estimator, summary)``: the epochs trained this round, and the best validation loss (negative log density of
    the held-out parameters, per simulation) of this round.

    ``theta`` (n, dim) and ``x`` (n, C, N, N, N) float32 arrays or tensors; invalid simulations must be removed
    first (they come from seeds outside the brain: the prior is truncated to seeds inside it).
    """
    import torch

    training = config["training"]
    torch.manual_seed(int(training["seed"]) + len(trainer._data_round_index))
    epochs_before = len(trainer._summary["training_loss"])
    with _quiet():
        trainer.append_simulations(torch.as_tensor(theta, dtype=torch.float32), torch.as_tensor(x, dtype=torch.float32),
                                   proposal=proposal, data_device="cpu")
        estimator = trainer.train(training_batch_size=int(training["batch_size"]),
                                  learning_rate=float(training["learning_rate"]),
                                  validation_fraction=float(training["validation_fraction"]),
                                  stop_after_epochs=int(training["stop_after_epochs"]),
                                  max_num_epochs=int(max_epochs or training["max_epochs"]))
    summary = trainer._summary
    return estimator, {"epochs": len(summary["training_loss"]) - epochs_before,
                       "best_validation_loss": float(summary["best_validation_loss"][-1])}


def build_posterior(trainer, estimator, prior, observed):
    """The posterior at the patient's observation (``observed``: (C, N, N, N)), truncated to the prior box."""
    import torch

    with _quiet():
        posterior = trainer.build_posterior(estimator, prior=prior)
    return posterior.set_default_x(torch.as_tensor(observed, dtype=torch.float32)[None])


def direct_posterior(estimator, prior, observed):
    """A posterior from a trained estimator alone (the amortised network), at ``observed``."""
    import torch
    from sbi.inference import DirectPosterior

    posterior = DirectPosterior(estimator, prior=prior, device="cpu")
    return posterior.set_default_x(torch.as_tensor(observed, dtype=torch.float32)[None])


def sample(posterior, n: int, seed: int):
    """(n, dim) float64 numpy draws from ``posterior`` at its default observation (reproducible for a seed)."""
    import torch

    torch.manual_seed(int(seed))
    with _quiet():
        return posterior.sample((int(n),), show_progress_bars=False).double().numpy()


def log_prob(distribution, theta):
    """(n,) float64 log density of ``theta`` (n, dim) under the prior or a posterior, unnormalised for posteriors
    (the truncation's normalising constant is the same for every point)."""
    import torch

    theta = torch.as_tensor(theta, dtype=torch.float32)
    with _quiet(), torch.no_grad():
        if hasattr(distribution, "set_default_x"):
            return distribution.log_prob(theta, norm_posterior=False).double().numpy()
        return distribution.log_prob(theta).double().numpy()


def save_weights(path, estimator, config: dict, names, in_channels: int, low, high, extra: dict | None = None):
    """Write an estimator for ``torch.load(weights_only=True)``: its state, the config it was built from, the
    parameter names, channels and the prior box it was trained on."""
    import torch

    path = Path(path)
    with atomic_path(path, ".pt") as tmp:
        torch.save({"state_dict": estimator.state_dict(), "config": config, "names": list(names),
                    "in_channels": int(in_channels), "low": [float(v) for v in low], "high": [float(v) for v in high],
                    **(extra or {})}, tmp)
    return path


def load_weights(path):
    """``(estimator, saved)`` from :func:`save_weights`' file; InputError naming the file if it is not one."""
    import pickle
    import zipfile

    import torch

    from .config import check_config

    path = Path(path)
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile) as error:
        raise InputError(f"NPE weights {path}: cannot read them ({error})") from None
    if not isinstance(saved, dict) or not WEIGHTS_KEYS <= set(saved):
        raise InputError(f"NPE weights {path}: not an NPE weights file (Scripts/npe_train.py writes them)")
    config = saved["config"]
    check_config(config, f"NPE weights {path}")
    size = int(config["observation"]["crop_size"])
    dim = len(saved["names"])
    # The builder needs a batch to size the network; the z-scoring it computes is overwritten by the saved state.
    theta = torch.linspace(0.0, 1.0, 2)[:, None].repeat(1, dim) + torch.arange(dim)[None]
    x = torch.zeros(2, saved["in_channels"], size, size, size)
    with _quiet():
        estimator = density_estimator_builder(config, saved["in_channels"])(theta, x)
    try:
        estimator.load_state_dict(saved["state_dict"])
    except RuntimeError as error:
        raise InputError(f"NPE weights {path}: they do not fit the network their config describes") from error
    estimator.eval()
    return estimator, saved
