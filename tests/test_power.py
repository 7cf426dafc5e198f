"""`vgbench power`: the smallest p each claim's test can give with its seeds, against hand values."""
from math import comb
from pathlib import Path

import pandas as pd
import pytest
import yaml

from vgbench import cli, grid, power

REPO = Path(__file__).resolve().parents[1]


def _table(tmp_path, seeds):
    """The smoke profile with `seeds` seeds in mlp_mitigations and explosion, plus a claim whose
    selector leaves the depth axis free (one unit per seed and depth)."""
    raw = yaml.safe_load((REPO / "configs/smoke.yaml").read_text())
    for s in ("mlp_mitigations", "explosion"):
        raw["studies"][s]["seeds"] = seeds
    raw["claims"].append({"id": "free_depth", "question": "mitigations", "text": "t", "study": "mlp_mitigations",
                          "treatment": {"variant": "batch_norm"}, "control": {"variant": "baseline"},
                          "outcome": "score"})
    p = tmp_path / "p.yaml"
    p.write_text(yaml.safe_dump(raw, sort_keys=False))
    prof = grid.load_profile(p)
    return prof, power.table(prof).set_index("claim"), p


@pytest.mark.parametrize("seeds", [5, 8])
def test_floors_are_fisher_and_sign_test_by_hand(tmp_path, seeds):
    prof, t, _ = _table(tmp_path, seeds)
    # every control seed diverged, no treatment seed did: p = 2 / C(2n, n) (two-sided Fisher)
    r = t.loc["clip_high_lr"]
    assert r["p_floor"] == pytest.approx(2 / comb(2 * seeds, seeds), rel=1e-9)
    m = sum(c.family == r["family"] for c in prof.claims)
    assert r["m"] == m and r["holm_floor"] == pytest.approx(min(1, m * 2 / comb(2 * seeds, seeds)))
    # a trainable depth that moves by the same grid step in every pair: sign test 2 / 2^n
    r = t.loc["relu_he_trainable"]
    assert r["p_floor"] == pytest.approx(2 / 2 ** seeds)
    assert r["verdict"] == ("can never be supported" if seeds == 5 else "can be supported")
    assert pd.isna(t.loc["batch_norm_helps", "p_floor"]) and t.loc["batch_norm_helps", "verdict"] == "no floor"


@pytest.mark.parametrize("seeds", [3, 10])
def test_a_one_sample_gradient_ratio_has_the_sign_test_floor_where_every_run_underflows(tmp_path, seeds):
    """Every run of a one-sample log10-ratio claim censored at float32's floor: all values alike,
    the evaluator's sign test gives 2 / 2^n -- 0.25 with 3 seeds (default's init study), 0.002 with 10;
    not 'can never be supported': runs that do not underflow can still decide it."""
    raw = yaml.safe_load((REPO / "configs/smoke.yaml").read_text())
    raw["studies"]["init_depth"]["seeds"] = seeds
    p = tmp_path / "p.yaml"
    p.write_text(yaml.safe_dump(raw, sort_keys=False))
    prof = grid.load_profile(p)
    (cid,) = [c.id for c in prof.claims if c.outcome == "log10_ratio_init" and c.control is None]
    r = power.table(prof).set_index("claim").loc[cid]
    assert r["p_floor"] == pytest.approx(2 / 2 ** seeds) and "where every run underflows float32" in r["test"]
    assert r["m"] < 25 and r["verdict"] == ("cannot be supported where every run underflows" if seeds == 3
                                           else "can be supported")
    assert power.warning(prof, str(p)) is None or cid not in power.warning(prof, str(p))


def test_units_count_the_axes_a_selector_leaves_free(tmp_path):
    prof, _, _ = _table(tmp_path, 5)
    c = {c.id: c for c in prof.claims}
    study = prof.studies["mlp_mitigations"]
    assert power.units(c["batch_norm_helps"], study, c["batch_norm_helps"].treatment) == 5  # depth: max
    assert power.units(c["free_depth"], study, c["free_depth"].treatment) == 5 * len(study.axes["depth"])
    assert power.units(c["batch_norm_area"], study, c["batch_norm_area"].treatment) == 5  # along depth


def test_power_command_names_the_claims_that_cannot_be_supported(tmp_path, capsys):
    _, _, p = _table(tmp_path, 5)
    assert cli.main(["power", str(p)]) == 0
    out = capsys.readouterr().out
    line = next(l for l in out.splitlines() if l.startswith("relu_he_trainable"))
    assert "0.062" in line and "can never be supported" in line
    assert "1 can never be supported" in out.splitlines()[-1]


@pytest.mark.parametrize("seeds", [5, 8])
def test_warning_names_exactly_the_claims_that_can_never_be_supported(tmp_path, seeds):
    prof, _, p = _table(tmp_path, seeds)
    w = power.warning(prof, str(p))
    if seeds == 5:
        assert "1 claim(s)" in w and "relu_he_trainable" in w and str(p) in w
    else:
        assert w is None


def test_pipeline_warns_before_any_run_when_a_claim_can_never_be_supported(tmp_path):
    from conftest import snake
    _, _, p = _table(tmp_path, 5)
    err = snake(tmp_path, "-n", "--configfile", str(p)).stderr
    line = [l for l in err.splitlines() if "can never be supported" in l]
    assert len(line) == 1 and "relu_he_trainable" in line[0]
