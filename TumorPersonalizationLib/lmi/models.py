"""The trained models Learn-Morph-Infer reads, loaded together: the inverse network and the shape and seed
regressors (``Resources/LMI`` by default; for the mass-effect model ``Resources/LMI/mass_effect``)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from .config import FISHER_KOLMOGOROV, MASS_EFFECT, growth_model, lmi_dir
from .network import WEIGHTS_NAME, InverseNet, load_network
from .shape_regressor import SEED_WEIGHTS_NAME
from .shape_regressor import WEIGHTS_NAME as SHAPE_WEIGHTS_NAME
from .shape_regressor import load_seed_regressor, load_shape_regressor


def model_dir(model: str = FISHER_KOLMOGOROV) -> Path:
    """Where the shipped models of a growth model live: ``Resources/LMI`` (Fisher-Kolmogorov) or
    ``Resources/LMI/mass_effect``."""
    return lmi_dir() / "mass_effect" if model == MASS_EFFECT else lmi_dir()


def default_weights(model: str = FISHER_KOLMOGOROV) -> Path:
    return model_dir(model) / WEIGHTS_NAME


def default_shape_weights(model: str = FISHER_KOLMOGOROV) -> Path:
    return model_dir(model) / SHAPE_WEIGHTS_NAME


def default_seed_weights(model: str = FISHER_KOLMOGOROV) -> Path:
    return model_dir(model) / SEED_WEIGHTS_NAME


@dataclass(frozen=True, eq=False)
class Models:
    """The models one personalization reads.

    Attributes
    ----------
    network : InverseNet
        In eval mode; ``config`` is the LMI config it was trained with (grid, target bounds, acceptance sizes).
    shape, seed : MemberMean or None
        The shape regressor (mu1, mu2) and the seed regressor; None where the estimate takes that part from the
        network.
    weights, shape_weights, seed_weights : Path or None
        Where each was read from (None: not read).
    notes : tuple of str
        For the report (weights given but not read).
    """

    network: InverseNet
    config: dict
    shape: object | None
    seed: object | None
    weights: Path
    shape_weights: Path | None
    seed_weights: Path | None
    notes: tuple = ()


def _load_regressor(path, network_config: dict, load, what: str, takes: str):
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} weights {path} not found (train them with Scripts/lmi_train_shape.py, or take "
                         f"{takes} from the network)")
    model, config = load(path)
    if config["grid"] != network_config["grid"]:
        raise InputError(f"{what} weights {path}: trained on the grid {config['grid']}, the network on "
                         f"{network_config['grid']}")
    if growth_model(config) != growth_model(network_config):
        raise InputError(f"{what} weights {path}: trained on the {growth_model(config)} model, the network on the "
                         f"{growth_model(network_config)} model")
    return model


def load_shape_model(path, network_config: dict):
    """The shape regressor at ``path``; InputError if it is missing or was trained for another network grid."""
    return _load_regressor(path, network_config, load_shape_regressor, "shape regressor", "mu1, mu2")


def load_seed_model(path, network_config: dict):
    """The seed regressor at ``path``; InputError if it is missing or was trained for another network grid."""
    return _load_regressor(path, network_config, load_seed_regressor, "seed regressor", "the seed")


def load_models(weights=None, shape_weights=None, seed_weights=None, *, mu_from: str = "shape",
                seed_from: str = "shape", model: str = FISHER_KOLMOGOROV) -> Models:
    """The inverse network (``weights``, default ``inverse_net.pt`` in :func:`model_dir`) and, where ``mu_from``
    / ``seed_from`` is ``"shape"``, the shape / seed regressor (default the shipped ones), all trained on the
    growth ``model``'s simulations. InputError names a file that is missing, unreadable or made for another
    network grid or growth model."""
    weights = Path(weights) if weights is not None else default_weights(model)
    if not weights.is_file():
        raise InputError(f"LMI weights {weights} not found (train them with Scripts/lmi_train.py)")
    network, config = load_network(weights)
    if growth_model(config) != model:
        raise InputError(f"LMI weights {weights}: trained on the {growth_model(config)} model, not the {model} "
                         f"model")
    notes, shape, seed = [], None, None
    if mu_from == "shape":
        shape_weights = Path(shape_weights) if shape_weights is not None else default_shape_weights(model)
        shape = load_shape_model(shape_weights, config)
    elif shape_weights is not None:
        notes.append(f"the shape regressor weights {shape_weights} were not read: mu1, mu2 came from the inverse "
                     "network (mu_from 'auto' takes them there with the patient's tissue maps and no refinement)")
        shape_weights = None
    if seed_from == "shape":
        seed_weights = Path(seed_weights) if seed_weights is not None else default_seed_weights(model)
        seed = load_seed_model(seed_weights, config)
    else:
        seed_weights = None
    return Models(network, config, shape, seed, weights, shape_weights, seed_weights, tuple(notes))
