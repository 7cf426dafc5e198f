"""Config validation: every invalid input fails before any work, naming the key."""
import pytest
import yaml

from vgbench import cli
from vgbench.config import ConfigError, load, parse_overrides

BAD = [
    ({"deptth": 3}, "deptth", "depth"),                      # typo -> suggestion
    ({"depth": 0}, "depth", ">= 1"),
    ({"depth": 2.5}, "depth", "integer"),
    ({"depth": True}, "depth", "integer"),
    ({"lr": -0.1}, "lr", "> 0"),
    ({"lr": "fast"}, "lr", "number"),
    ({"activation": "swish"}, "activation", "sigmoid"),
    ({"init": "glorot"}, "init", "xavier"),
    ({"model": "mamba"}, "model", "transformer"),
    ({"task": "cifar"}, "task", "mnist1d"),
    ({"norm": "group"}, "norm", "layer"),
    ({"optimizer": "rmsprop"}, "optimizer", "adam"),
    ({"residual": "yes"}, "residual", "true or false"),
    ({"model": "cnn", "residual": True}, "residual", "resnet"),
    ({"model": "rnn", "task": "adding", "residual": True}, "residual", "rnn"),
    ({"model": "resnet", "residual": False}, "residual", "resnet"),
    ({"model": "lstm", "task": "adding", "norm": "batch"}, "norm", "layer"),
    ({"model": "lstm", "task": "adding", "activation": "relu"}, "activation", "tanh"),
    ({"model": "rnn", "task": "mnist1d"}, "task", "mnist1d_seq"),
    ({"model": "mlp", "task": "adding"}, "task", "sequence task"),
    ({"init": "identity"}, "init", "rnn"),
    ({"sigmoid_grad_c": 0.1, "activation": "relu"}, "sigmoid_grad_c", "sigmoid"),
    ({"sigmoid_grad_c": -0.1}, "sigmoid_grad_c", ">= 0"),
    ({"pretrain": "greedy_ae", "model": "lstm", "task": "adding"}, "pretrain", "mlp"),
    ({"clip_norm": 0}, "clip_norm", "> 0"),
    ({"steps": -1}, "steps", ">= 0"),
    ({"momentum": 1.0}, "momentum", "[0, 1)"),
    ({"task_args": {"seq_len": 10}}, "mnist1d", "seq_len"),
    ({"task": "adding", "model": "rnn", "task_args": {"seqlen": 10}}, "seqlen", "seq_len"),
    ({"task": "adding", "model": "rnn", "task_args": {"seq_len": 0}}, "seq_len", "positive"),
    ({"aux_loss_weight": 0.3, "model": "gru", "task": "copy"}, "aux_loss_weight", "mlp"),
]


@pytest.mark.parametrize("bad,key,hint", BAD)
def test_invalid_config_names_key(bad, key, hint):
    with pytest.raises(ConfigError) as e:
        load(bad)
    assert key in str(e.value) and hint in str(e.value)


@pytest.mark.parametrize("bad,key,hint", BAD[:8] + BAD[16:20])
def test_cli_exit_2_and_no_output(tmp_path, capsys, bad, key, hint):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(bad))
    out = tmp_path / "run"
    assert cli.main(["train", str(cfg), "--out", str(out)]) == 2
    assert key in capsys.readouterr().err
    assert not out.exists()


def test_cli_set_override_is_validated(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["train", "--set", "activation=swish", "--out", str(out)]) == 2
    assert "activation" in capsys.readouterr().err and not out.exists()


def test_missing_config_file(tmp_path, capsys):
    assert cli.main(["train", str(tmp_path / "nope.yaml"), "--out", str(tmp_path / "r")]) == 2
    assert "not found" in capsys.readouterr().err


def test_defaults_resolved():
    c = load({})
    assert c.activation == "sigmoid" and c.residual is False and c.eval_every == 200
    r = load({"model": "rnn", "task": "adding"})
    assert r.activation == "tanh" and r.task_args["seq_len"] == 50
    assert load({"model": "resnet"}).residual is True
    assert load({"lr": "1e-3"}).lr == pytest.approx(1e-3)   # YAML 1.1 reads 1e-3 as a string


def test_overrides_nested_and_typed():
    assert parse_overrides(["depth=5", "task_args.seq_len=100", "clip_norm=null", "residual=true"]) == \
        {"depth": 5, "task_args": {"seq_len": 100}, "clip_norm": None, "residual": True}
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["depth"])


def test_modern_preset():
    c = load({"preset": "modern"})
    assert (c.activation, c.init, c.norm, c.residual, c.optimizer) == ("relu", "he", "batch", True, "adam")
    assert load({"preset": "modern", "optimizer": "sgd"}).optimizer == "sgd"  # explicit keys win


def test_condition_excludes_seed():
    a, b = load({"seed": 1}), load({"seed": 2})
    assert a.condition() == b.condition() and a.to_dict() != b.to_dict()
