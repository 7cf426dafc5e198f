"""Run configuration: the public vocabulary of DESIGN.md as one frozen dataclass.

`load(mapping)` validates a plain dict (from YAML or a profile) and returns a fully
resolved `RunConfig` (every default filled in). Every invalid input raises `ConfigError`
with a message that names the key and the allowed values or range, before any work is
done; the CLI turns that into exit code 2.
"""
from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

TASKS = ("mnist1d", "digits", "adding", "copy", "temporal_order", "mnist1d_seq", "digits_seq")
SEQUENCE_TASKS = ("adding", "copy", "temporal_order", "mnist1d_seq", "digits_seq")
MODELS = ("mlp", "cnn", "resnet", "rnn", "lstm", "gru", "transformer")
SEQUENCE_MODELS = ("rnn", "lstm", "gru", "transformer")
RECURRENT = ("rnn", "lstm", "gru")
ACTIVATIONS = ("sigmoid", "tanh", "relu", "leaky_relu", "prelu", "elu", "selu", "gelu", "softsign")
INITS = ("default", "normal", "lecun", "xavier", "he", "orthogonal", "identity", "gaussian", "lsuv")
NORMS = ("none", "batch", "layer")
OPTIMIZERS = ("sgd", "momentum", "adam")
PRETRAINS = ("none", "greedy_ae")

# Task arguments each task accepts, with defaults. seq_len is T for the generated tasks
# (for copy: the number of blanks between the symbols and the delimiter, as in Arjovsky
# et al. 2016, so the whole sequence is T + 20 long).
TASK_ARGS: dict[str, dict[str, Any]] = {
    "mnist1d": {"num_samples": 5000},
    "digits": {},
    "mnist1d_seq": {"num_samples": 5000},
    "digits_seq": {},
    "adding": {"seq_len": 50, "n_train": 10000, "n_val": 1000, "n_test": 1000},
    "copy": {"seq_len": 20, "n_train": 10000, "n_val": 1000, "n_test": 1000},
    "temporal_order": {"seq_len": 50, "n_train": 10000, "n_val": 1000, "n_test": 1000},
}

# "Modern recipe" preset (issue 4): the combination today's practice would reach for.
PRESETS: dict[str, dict[str, Any]] = {
    "modern": {"activation": "relu", "init": "he", "norm": "batch", "residual": True,
               "optimizer": "adam"},
}


class ConfigError(ValueError):
    """An invalid run configuration; the message names the key and what is allowed."""


@dataclass(frozen=True)
class RunConfig:
    task: str = "mnist1d"
    task_args: dict = field(default_factory=dict)
    model: str = "mlp"
    depth: int = 20
    width: int = 128
    activation: str | None = None   # None: sigmoid for feed-forward nets, tanh for recurrent
    leaky_relu_slope: float = 0.01  # PyTorch's default negative slope
    init: str = "default"
    weight_var: float = 1.0         # init gaussian: W ~ N(0, weight_var / fan_in) (sigma_w^2)
    bias_var: float = 0.0           # init gaussian: b ~ N(0, bias_var) (sigma_b^2)
    norm: str = "none"
    residual: bool | None = None    # None: true for resnet, false otherwise
    residual_branch: str = "plain"  # plain: h = skip + F(x); rezero: h = skip + alpha F(x), alpha = 0 at init;
                                    # fixup: Zhang et al. 2019 (scaled branch init, scalar biases and multiplier)
    forget_bias: float | str = 0.0  # LSTM forget-gate bias: a number, or chrono (Tallec & Ollivier 2018)
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9           # used by optimizer: momentum only
    weight_decay: float = 0.0
    clip_norm: float | None = None
    sigmoid_grad_c: float = 0.0
    pretrain: str = "none"
    pretrain_steps: int = 500       # per layer, greedy_ae only
    aux_loss_weight: float = 0.0
    aux_every: int = 0              # 0: a head every depth//4 layers (at least 1)
    steps: int = 2000
    batch_size: int = 100
    seed: int = 0
    data_seed: int = 0
    eval_every: int = 0             # 0: steps // 10 (at least 1)
    record_points: int = 16         # log-spaced gradient measurements after step 0
    jacobian_inputs: int = 0        # mlp: singular values of d h_L / d x at init on this many inputs (0: off)
    norm_position: str = "pre"      # transformer: layer norm before each sublayer (pre) or after the residual add (post)
    heads: int = 4                  # transformer: attention heads (width = d_model must be a multiple)
    warmup_steps: int = 0           # linear learning-rate warm-up over this many steps (0: none)
    preset: str | None = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def recurrent(self) -> bool:
        return self.model in RECURRENT

    def identity(self) -> dict:
        """What a run id hashes: the config, minus fields added after results existed that are at
        their default (so adding vocabulary never renames, and retrains, existing runs)."""
        d = self.to_dict()
        for k, default in LATE_FIELDS.items():
            if d[k] == default:
                del d[k]
        return d

    def condition(self) -> dict:
        """The config minus the seed: what seeds of one condition share."""
        d = self.identity()
        d.pop("seed")
        return d


FIELDS = {f.name: f for f in dataclasses.fields(RunConfig)}
# fields added to the vocabulary after results existed, with their defaults (see identity())
LATE_FIELDS = {"weight_var": 1.0, "bias_var": 0.0, "residual_branch": "plain", "forget_bias": 0.0,
               "jacobian_inputs": 0, "norm_position": "pre", "heads": 4, "warmup_steps": 0}
RESIDUAL_BRANCHES = ("plain", "rezero", "fixup")
CHOICES = {"task": TASKS, "model": MODELS, "activation": ACTIVATIONS, "init": INITS,
           "norm": NORMS, "optimizer": OPTIMIZERS, "pretrain": PRETRAINS,
           "preset": tuple(PRESETS), "residual_branch": RESIDUAL_BRANCHES,
           "norm_position": ("pre", "post")}
# (lower bound, inclusive?) for numeric keys
BOUNDS = {"depth": (1, True), "width": (1, True), "lr": (0, False), "momentum": (0, True),
          "weight_decay": (0, True), "clip_norm": (0, False), "sigmoid_grad_c": (0, True),
          "pretrain_steps": (1, True), "aux_loss_weight": (0, True), "aux_every": (0, True),
          "steps": (0, True), "batch_size": (1, True), "seed": (0, True),
          "data_seed": (0, True), "eval_every": (0, True), "record_points": (1, True),
          "leaky_relu_slope": (0, True), "weight_var": (0, False), "bias_var": (0, True),
          "jacobian_inputs": (0, True), "heads": (1, True), "warmup_steps": (0, True)}
INT_KEYS = {n for n, f in FIELDS.items() if f.type in ("int",)}
FLOAT_KEYS = {n for n, f in FIELDS.items() if f.type in ("float", "float | None")}


def _unknown(key: str, valid, where: str) -> ConfigError:
    close = difflib.get_close_matches(key, list(valid), n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return ConfigError(f"unknown key '{key}' in {where}{hint} (valid keys: {', '.join(valid)})")


def _coerce(key: str, value: Any) -> Any:
    if value is None:
        if FIELDS[key].type.endswith("None"):
            return None
        raise ConfigError(f"'{key}' must not be null")
    if key in CHOICES:
        if not isinstance(value, str) or value not in CHOICES[key]:
            raise ConfigError(f"invalid {key} {value!r}; allowed: {', '.join(CHOICES[key])}")
        return value
    if key == "forget_bias":
        if value == "chrono":
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value \
                or value in (float("inf"), float("-inf")):
            raise ConfigError(f"'forget_bias' must be a finite number or 'chrono', got {value!r}")
        return float(value)
    if key in ("residual",):
        if not isinstance(value, bool):
            raise ConfigError(f"'{key}' must be true or false, got {value!r}")
        return value
    if key == "task_args":
        if not isinstance(value, Mapping):
            raise ConfigError(f"'task_args' must be a mapping, got {value!r}")
        return dict(value)
    if key in INT_KEYS:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"'{key}' must be an integer, got {value!r}")
    elif key in FLOAT_KEYS:
        # YAML 1.1 reads "1e-3" as a string; accept any numeric spelling.
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise ConfigError(f"'{key}' must be a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"'{key}' must be a number, got {value!r}")
        value = float(value)
        if value != value or value in (float("inf"), float("-inf")):
            raise ConfigError(f"'{key}' must be finite, got {value!r}")
    if key in BOUNDS:
        lo, inclusive = BOUNDS[key]
        if value < lo or (not inclusive and value == lo):
            rel = ">=" if inclusive else ">"
            raise ConfigError(f"'{key}' must be {rel} {lo}, got {value!r}")
    if key == "momentum" and value >= 1:
        raise ConfigError(f"'momentum' must be in [0, 1), got {value!r}")
    return value


def load(mapping: Mapping[str, Any] | None = None, where: str = "run config") -> RunConfig:
    """Validate a plain mapping and return the resolved RunConfig (raises ConfigError)."""
    mapping = dict(mapping or {})
    for key in mapping:
        if key not in FIELDS:
            raise _unknown(key, FIELDS, where)
    preset = mapping.get("preset")
    if preset is not None:
        preset = _coerce("preset", preset)
        mapping = {**PRESETS[preset], **mapping}
    values = {k: _coerce(k, v) for k, v in mapping.items()}
    cfg = RunConfig(**values)
    return _resolve(cfg)


def _resolve(cfg: RunConfig) -> RunConfig:
    task, model = cfg.task, cfg.model
    # task arguments: only the task's own keys, defaults filled in
    allowed = TASK_ARGS[task]
    for k, v in cfg.task_args.items():
        if k not in allowed:
            if not allowed:
                raise ConfigError(f"task '{task}' takes no task_args, got '{k}'")
            raise _unknown(k, allowed, f"task_args of task '{task}'")
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ConfigError(f"task_args.{k} must be a positive integer, got {v!r}")
    task_args = {**allowed, **cfg.task_args}
    if task == "temporal_order" and task_args["seq_len"] < 10:
        raise ConfigError(f"task_args.seq_len must be >= 10 for temporal_order, got {task_args['seq_len']}")
    if task == "adding" and task_args["seq_len"] < 2:
        raise ConfigError(f"task_args.seq_len must be >= 2 for adding, got {task_args['seq_len']}")

    recurrent = model in RECURRENT
    sequence = model in SEQUENCE_MODELS
    if sequence and task not in SEQUENCE_TASKS:
        alt = {"mnist1d": " (use task: mnist1d_seq)", "digits": " (use task: digits_seq)"}.get(task, "")
        raise ConfigError(f"model '{model}' needs a sequence task, got task '{task}'{alt}; "
                          f"sequence tasks: {', '.join(SEQUENCE_TASKS)}")
    if not sequence and task in SEQUENCE_TASKS:
        raise ConfigError(f"task '{task}' is a sequence task; model must be one of "
                          f"{', '.join(SEQUENCE_MODELS)}, got '{model}'")
    if model == "transformer":
        if cfg.width % cfg.heads:
            raise ConfigError(f"width (d_model) {cfg.width} must be a multiple of heads {cfg.heads}")
        if cfg.norm == "batch":
            raise ConfigError("norm 'batch' is not available for model 'transformer': it has layer norm, placed "
                              "by norm_position (none with residual_branch: rezero)")
    else:
        if cfg.norm_position != "pre" or cfg.heads != 4:
            raise ConfigError(f"norm_position and heads configure model 'transformer'; got model '{model}'")

    activation = cfg.activation or ("tanh" if recurrent else "relu" if model == "transformer" else "sigmoid")
    if model in ("lstm", "gru") and activation != "tanh":
        raise ConfigError(f"activation '{activation}' is not available for model '{model}': "
                          "its gates are sigmoid and its cell nonlinearity is tanh; allowed: tanh")

    residual = cfg.residual
    if residual is None:
        residual = model in ("resnet", "transformer")
    if model == "transformer" and not residual:
        raise ConfigError("residual: false is not available for model 'transformer' (its blocks are residual)")
    if model == "resnet" and not residual:
        raise ConfigError("residual: false contradicts model 'resnet' (use model: cnn for the plain stack)")
    if model == "cnn" and residual:
        raise ConfigError("residual: true is not available for model 'cnn'; use model: resnet "
                          "(the same conv stack with skips)")
    if recurrent and residual:
        raise ConfigError(f"residual: true is not available for model '{model}'; allowed for: mlp, resnet")

    if cfg.norm == "batch" and recurrent:
        raise ConfigError(f"norm 'batch' is not supported in recurrent cells (model '{model}'); "
                          "use norm: layer")
    if cfg.init == "identity" and model != "rnn":
        raise ConfigError(f"init 'identity' sets the recurrent matrix to I (IRNN); it is only "
                          f"available for model 'rnn', got '{model}'")
    if cfg.residual_branch != "plain" and not residual:
        raise ConfigError(f"residual_branch '{cfg.residual_branch}' scales residual branches; it needs "
                          "residual: true (model mlp or resnet)")
    if cfg.residual_branch == "fixup" and model == "transformer":
        raise ConfigError("residual_branch 'fixup' is defined for MLPs and ResNets; for a transformer use plain or rezero")
    if cfg.residual_branch == "fixup" and cfg.norm != "none":
        raise ConfigError(f"residual_branch 'fixup' replaces normalisation layers; it needs norm: none, "
                          f"got norm '{cfg.norm}'")
    if cfg.init == "lsuv" and recurrent:
        raise ConfigError(f"init 'lsuv' rescales feed-forward layers to unit output variance; it is available "
                          f"for mlp, cnn, resnet, got model '{model}'")
    if cfg.jacobian_inputs > 0 and model != "mlp":
        raise ConfigError(f"jacobian_inputs records the input-output Jacobian of an MLP; got model '{model}'")
    if cfg.forget_bias != 0.0 and model != "lstm":
        raise ConfigError(f"forget_bias sets an LSTM's forget-gate bias; got model '{model}'")
    if cfg.init != "gaussian" and (cfg.weight_var != 1.0 or cfg.bias_var != 0.0):
        raise ConfigError(f"weight_var / bias_var set the variances of init 'gaussian'; got init '{cfg.init}' "
                          "(use init: gaussian, or drop weight_var / bias_var)")
    if cfg.sigmoid_grad_c > 0 and activation != "sigmoid":
        raise ConfigError(f"sigmoid_grad_c > 0 needs activation 'sigmoid', got '{activation}'")
    if cfg.pretrain == "greedy_ae" and model != "mlp":
        why = ("recurrent layers have no per-layer input to reconstruct"
               if recurrent else "it is implemented for fully connected layers")
        raise ConfigError(f"pretrain 'greedy_ae' is only available for model 'mlp' ({why}); "
                          f"got model '{model}'")
    if cfg.aux_loss_weight > 0 and sequence:
        raise ConfigError(f"aux_loss_weight > 0 (auxiliary heads on hidden layers) is available "
                          f"for mlp, cnn, resnet; got model '{model}'")
    if cfg.aux_loss_weight > 0 and cfg.depth < 2:
        raise ConfigError("aux_loss_weight > 0 needs depth >= 2 (heads go on hidden layers below the top)")
    aux_every = cfg.aux_every or max(1, cfg.depth // 4)
    if cfg.aux_loss_weight > 0 and aux_every >= cfg.depth:
        raise ConfigError(f"aux_every must be < depth ({cfg.depth}), got {aux_every}")
    if task in ("mnist1d", "mnist1d_seq") and task_args["num_samples"] < MIN_MNIST1D_SAMPLES:
        raise ConfigError(f"task_args.num_samples must be >= {MIN_MNIST1D_SAMPLES} for {task} "
                          f"(10 classes, a train/val/test split), got {task_args['num_samples']}")
    n_train = train_size(task, task_args)
    if cfg.batch_size > n_train:
        raise ConfigError(f"batch_size {cfg.batch_size} is larger than the training set of task '{task}' "
                          f"({n_train} examples with these task_args); use batch_size <= {n_train}")
    eval_every = cfg.eval_every or max(1, cfg.steps // 10)
    norm = cfg.norm
    if model == "transformer":   # layer norm, except ReZero's transformer, which replaces it (Bachlechner et al.)
        norm = "none" if cfg.residual_branch == "rezero" else "layer"
    out = dataclasses.replace(cfg, task_args=task_args, activation=activation, norm=norm,
                              residual=residual, aux_every=aux_every, eval_every=eval_every)
    need, limit = estimate_bytes(out), memory_limit_bytes()
    if need > limit:
        raise ConfigError(f"this run needs about {need / 2**30:.3g} GiB (width {cfg.width}, depth {cfg.depth}, "
                          f"task_args {task_args}), more than the {limit / 2**30:.3g} GiB allowed "
                          f"({MEMORY_LIMIT_ENV} or 80 % of this machine's memory); make it smaller")
    return out


MIN_MNIST1D_SAMPLES = 100
DIGITS_N = 1797                       # scikit-learn's 8x8 digits
MEMORY_LIMIT_ENV = "VGBENCH_MAX_MEMORY_GB"
# (sequence length, features per step or input size, spatial size for conv nets) per task;
# sequence tasks take T from task_args
_SHAPES = {"mnist1d": (1, 40, 40), "digits": (1, 64, 64), "mnist1d_seq": (40, 1, 1), "digits_seq": (8, 8, 1),
           "adding": (None, 2, 1), "copy": (None, 10, 1), "temporal_order": (None, 8, 1)}


def train_size(task: str, task_args: Mapping) -> int:
    """Number of training examples of a task (after the validation split), without loading it."""
    if task in ("mnist1d", "mnist1d_seq"):
        n = int(task_args["num_samples"] // 10 * 10 * 0.8)  # mnist1d: samples per class x 10, 80 % train
        return n - n // 8                                    # 1/8 of it is validation (data._mnist1d)
    if task in ("digits", "digits_seq"):
        return DIGITS_N - math.ceil(0.4 * DIGITS_N)          # stratified 60/20/20 (data._digits)
    return task_args["n_train"]


def _shape(cfg: RunConfig) -> tuple:
    """(time steps, features per step, spatial length) of one example of the run's task."""
    T, feat, space = _SHAPES[cfg.task]
    if T is None:
        T = cfg.task_args["seq_len"] + (20 if cfg.task == "copy" else 0)
    return T, feat, space


def estimate_bytes(cfg: RunConfig) -> int:
    """A generous estimate of a run's peak memory in bytes (float32): parameters with their
    gradients and optimizer state, the data of all splits, and the activations of one batch
    kept for backward -- or, at step 0 where the first layer's gradient is tiny, the float32
    parameters and gradients beside a float64 copy of both and its activations in float64
    (instruments.ratio_float64), whichever is larger. Meant to refuse what cannot fit, not to
    predict within 2x."""
    T, feat, space = _shape(cfg)
    a = cfg.task_args
    n_all = (a.get("n_train", 0) + a.get("n_val", 0) + a.get("n_test", 0)) or a.get("num_samples", DIGITS_N)
    W, D, B = cfg.width, cfg.depth, cfg.batch_size
    if cfg.model in RECURRENT:
        params = D * 4 * (W * W + W * max(W, feat) + 2 * W)
        acts = B * T * W * D * 12            # gates, cell and hidden states per step, and their grads
    elif cfg.model == "transformer":
        params = D * 12 * W * W + T * W
        acts = B * T * D * (W * 24 + cfg.heads * T * 3)   # sublayer activations, attention maps, grads
    elif cfg.model == "mlp":
        params = feat * W + D * (W * W + W)
        acts = B * W * D * 8
    else:
        k = 9 if cfg.task == "digits" else 3
        params = D * W * W * k
        acts = B * W * space * D * 8
    data = n_all * T * feat * 2              # the float tensors and the numpy arrays they came from
    return 4 * (max(4 * params + acts, 6 * params + 2 * acts) + data)


# (fixed seconds per step, seconds per multiply-add of a batch) by model family, least-squares fits
# to the wall times of the default profile's 1253 runs on one machine (fresh clone of de7791d,
# 2026-12-04): the recurrent step's fixed cost is 5x the MLP's, so one pair for all (the fit of
# 2026-11-29) ranked the redesigned MLP jobs above the recurrent ones, which take longer.
_COST = {"mlp": (5.1e-4, 2.6e-10), "conv": (1.8e-3, 7.8e-10), "recurrent": (2.8e-3, 2.3e-10),
         "transformer": (8.4e-4, 4.4e-10)}  # transformer: no default-profile runs, the 2026-11-29 pair
# seconds a run costs beyond its training steps (set-up, data, writing), which estimate_seconds leaves
# out (its job ordering needs only the per-step part): the default profile's 162 zero-step init_depth
# runs took 60 s of wall time (fresh clone of df8d825, 2026-12-05). `vgbench status` adds it per run.
RUN_OVERHEAD_S = 0.4


def estimate_seconds(cfg: RunConfig) -> float:
    """A rough single-thread CPU time of a run, for scheduling only (the pipeline starts its
    longest jobs first): a fixed cost per step plus one proportional to the multiply-adds of a
    batch, by model family (_COST); on the runs it was fitted to it ranks runs with Spearman rho
    0.75-0.94 within a family and sums each family's time within 10 %."""
    T, feat, space = _shape(cfg)
    W, D = cfg.width, cfg.depth
    if cfg.model in RECURRENT:
        family, work = "recurrent", T * D * W * W * {"lstm": 4, "gru": 8}.get(cfg.model, 1)  # CPU GRU: 2x LSTM
    elif cfg.model == "transformer":
        family, work = "transformer", T * D * 12 * W * W
    elif cfg.model == "mlp":
        family, work = "mlp", D * W * W
    else:
        family, work = "conv", D * W * W * (9 if cfg.task == "digits" else 3) * space
    fixed, per_mac = _COST[family]
    return cfg.steps * (fixed + per_mac * cfg.batch_size * work)


def memory_limit_bytes() -> int:
    import os
    env = os.environ.get(MEMORY_LIMIT_ENV)
    if env:
        try:
            return int(float(env) * 2**30)
        except ValueError:
            raise ConfigError(f"{MEMORY_LIMIT_ENV} must be a number of GiB, got {env!r}") from None
    try:
        return int(0.8 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 64 * 2**30


def parse_overrides(pairs: list[str]) -> dict:
    """['depth=10', 'task_args.seq_len=50'] -> nested dict; values parsed as YAML."""
    out: dict = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"--set expects key=value, got {pair!r}")
        key, raw = pair.split("=", 1)
        value = safe_load(raw, f"--set {pair}") if raw != "" else None
        parts = key.strip().split(".")
        if not all(parts):
            raise ConfigError(f"--set {pair!r}: empty key")
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return out


def merge(base: Mapping, over: Mapping) -> dict:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that rejects a key given twice in one mapping (PyYAML keeps the last)."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                hash(key)
            except TypeError:
                continue  # the base class reports unhashable keys
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key '{key}' (first on line {seen[key] + 1}, again on line "
                    f"{key_node.start_mark.line + 1})", key_node.start_mark)
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def safe_load(text: str, where: str):
    """yaml.safe_load that rejects duplicate keys; errors become ConfigError naming `where`."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as e:
        raise ConfigError(f"{where}: not valid YAML: {' '.join(str(e).split())}") from None


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path} is a directory; expected a YAML config file")
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start}); save the file as UTF-8") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot be read: {e.strerror}") from None
    data = safe_load(text, str(path))
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys, got {type(data).__name__}")
    return data


RUN_RECORD_KEYS = frozenset({"config", "run_id", "config_hash"})


def run_record_config(data: dict) -> dict:
    """The training config inside a run directory's config.json (which also records commit, run id,
    versions); any other mapping is returned unchanged."""
    if RUN_RECORD_KEYS <= set(data) and isinstance(data["config"], dict):
        return data["config"]
    return data


def from_file(path: str | Path | None, overrides: list[str] = ()) -> RunConfig:
    """A config from a YAML file, a run directory's config.json, or the run directory itself."""
    if path and Path(path).is_dir() and (Path(path) / "config.json").is_file():
        path = Path(path) / "config.json"
    base = run_record_config(read_yaml(path)) if path else {}
    return load(merge(base, parse_overrides(list(overrides))), where=str(path or "run config"))


def config_hash(d: Mapping) -> str:
    """Stable short hash of a config mapping (canonical JSON, sha256)."""
    blob = json.dumps(d, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:10]
