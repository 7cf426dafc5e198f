"""Benchmark profiles -> RunSpecs with stable, readable run ids.

A profile (configs/<name>.yaml) is
    profile: smoke                  # a name
    defaults: {steps: 200, ...}     # under every study's base (optional)
    tune_seeds: [100]               # seeds of the LR-tuning stage (optional)
    job_by: variant                 # one pipeline job per (stage, study, variant) or per (stage, study)
    studies:
      <study>:
        base: {...}                 # a run config (DESIGN.md's vocabulary)
        variants: {name: {...}}     # conditions as overrides of base, one at a time
        axes: {depth: [4, 20]}      # lists of values, crossed with each other and the variants
        seeds: 5                    # a count (0..n-1) or a list
        lr_grid: [0.01, 0.1, 1.0]   # optional: tune lr per condition on the validation split
        baseline: baseline          # what each variant is compared with: a variant name, or a
                                    # mapping variant -> its baseline variant (statistics stage)
        tune_steps: 500             # optional: steps of the tuning runs (default: the run's)
Axis keys may be dotted (`task_args.seq_len`). The Snakefile and `vgbench grid` both expand
a profile through `expand()` / `tune_specs()` / `final_specs()` here, so the set of runs has
one definition. A run id is `<study>-<variant>-<axis values>-s<seed>-<hash>`, the hash
being sha256 of the resolved config: the same config gets the same id on any machine.
"""
from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vgbench import paths
from vgbench.config import ConfigError, RunConfig, _unknown, config_hash, estimate_seconds, load, merge, read_yaml

PROFILE_KEYS = ("profile", "description", "defaults", "tune_seeds", "job_by", "studies", "questions", "claims",
                "report")
REPORT_KEYS = ("init_study", "figures", "tables")
STUDY_KEYS = ("description", "base", "variants", "axes", "seeds", "lr_grid", "tune_steps", "tune_seeds",
              "baseline")


@dataclass(frozen=True)
class RunSpec:
    run_id: str
    study: str
    variant: str
    stage: str                   # "tune" | "final"
    labels: tuple                # ((axis, value), ...) as crossed
    cfg: RunConfig
    job: str = ""                # the Snakemake job that trains it: one per (stage, study, variant)
    tune_key: str = ""           # condition minus lr: what LR selection groups by

    @property
    def condition_id(self) -> str:
        return config_hash(self.cfg.condition())


@dataclass
class Study:
    name: str
    job_by: str
    base: dict
    variants: dict
    axes: dict
    seeds: list
    lr_grid: list
    tune_steps: int | None
    tune_seeds: list
    baselines: dict = field(default_factory=dict)   # variant -> baseline variant


@dataclass
class Profile:
    name: str
    path: str
    studies: dict = field(default_factory=dict)
    raw: dict = field(default_factory=dict)
    job_by: str = "variant"
    questions: list = field(default_factory=list)   # vgbench.claims.Question
    claims: list = field(default_factory=list)      # vgbench.claims.Claim
    report: dict = field(default_factory=dict)      # which studies and variants each figure/table shows

    @property
    def hash(self) -> str:
        return config_hash(self.raw)


def _slug(v: Any) -> str:
    s = re.sub(r"[^A-Za-z0-9.]+", "", str(v).replace("_", ""))
    return s[:12] or "x"


def _nest(key: str, value) -> dict:
    out: dict = {}
    node = out
    parts = key.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = value
    return out


def _seeds(v, where: str) -> list:
    if isinstance(v, int) and not isinstance(v, bool) and v >= 1:
        return list(range(v))
    if isinstance(v, list) and v and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in v):
        if len(set(v)) != len(v):
            raise ConfigError(f"{where}: seeds repeat: {v}")
        return list(v)
    raise ConfigError(f"{where}: seeds must be a positive count or a non-empty list of integers >= 0, got {v!r}")


def dotted(m: dict, prefix: str = "") -> dict:
    """A nested mapping in the axes' dotted form, which is also the runs table's column names:
    {'task_args': {'seq_len': 50}} -> {'task_args.seq_len': 50}."""
    out = {}
    for k, v in m.items():
        out.update(dotted(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def load_profile(path: str | Path) -> Profile:
    """Read and validate a profile; every run it implies is validated too (ConfigError
    naming the study and the run otherwise)."""
    if Path(path).is_dir():   # `vgbench status results`: every stage takes the results folder as --results
        raise ConfigError(f"{path} is a folder, not a profile (configs/<name>.yaml); "
                          f"the commands that read a results folder take it as --results {path}")
    raw = read_yaml(path)
    for k in raw:
        if k not in PROFILE_KEYS:
            raise _unknown(k, PROFILE_KEYS, f"profile {path}")
    studies_raw = raw.get("studies")
    if not isinstance(studies_raw, dict) or not studies_raw:
        raise ConfigError(f"profile {path}: 'studies' must be a non-empty mapping of study names")
    defaults = raw.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise ConfigError(f"profile {path}: 'defaults' must be a mapping")
    job_by = raw.get("job_by", "variant")
    if job_by not in ("variant", "study"):
        raise ConfigError(f"profile {path}: job_by must be 'variant' or 'study', got {job_by!r}")
    prof = Profile(name=str(raw.get("profile", Path(path).stem)), path=str(path), raw=raw, job_by=job_by)
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", prof.name) or prof.name.startswith("."):
        raise ConfigError(f"profile {path}: profile name {prof.name!r} must use letters, digits, _ . - only "
                          "(it names W&B runs and figure metadata)")
    for name, s in studies_raw.items():
        where = f"study '{name}'"
        if not re.fullmatch(r"[A-Za-z0-9_]+", str(name)):
            raise ConfigError(f"{where}: study names use letters, digits and _ only")
        if not isinstance(s, dict):
            raise ConfigError(f"{where}: expected a mapping with base/variants/axes/seeds")
        for k in s:
            if k not in STUDY_KEYS:
                raise _unknown(k, STUDY_KEYS, where)
        if not isinstance(s.get("base") or {}, dict):
            raise ConfigError(f"{where}: 'base' must be a mapping of run config keys, got {s['base']!r}")
        variants = s.get("variants") or {"base": {}}
        if not isinstance(variants, dict):
            raise ConfigError(f"{where}: 'variants' must be a mapping name -> overrides")
        for v, over in variants.items():
            if not re.fullmatch(r"[A-Za-z0-9_]+", str(v)):
                raise ConfigError(f"{where}: variant name {v!r} must use letters, digits and _ only")
            if over is not None and not isinstance(over, dict):
                raise ConfigError(f"{where}: variant '{v}' must be a mapping of overrides")
        axes = s.get("axes") or {}
        if not isinstance(axes, dict):
            raise ConfigError(f"{where}: 'axes' must be a mapping key -> list of values")
        for v, over in variants.items():
            clash = sorted(set(dotted(over or {})) & set(axes))
            if clash:
                raise ConfigError(f"{where}: variant '{v}' sets {', '.join(clash)}, an axis of the study (the axis "
                                  "values would silently replace it); drop it from the variant or the axes")
        for k, vals in axes.items():
            if not isinstance(vals, list) or not vals:
                raise ConfigError(f"{where}: axis '{k}' must be a non-empty list, got {vals!r}")
            if len({repr(v) for v in vals}) != len(vals):
                raise ConfigError(f"{where}: axis '{k}' repeats a value: {vals}")
        lr_grid = s.get("lr_grid", [])
        if lr_grid == [] and "lr_grid" in s:
            raise ConfigError(f"{where}: lr_grid is empty; list the learning rates to tune, or leave lr_grid out "
                              "to train at the base lr")
        if not isinstance(lr_grid, list) or any(isinstance(x, bool) or not isinstance(x, (int, float)) or x <= 0
                                                for x in lr_grid):
            raise ConfigError(f"{where}: lr_grid must be a list of numbers > 0, got {lr_grid!r}")
        if "lr" in axes and lr_grid:
            raise ConfigError(f"{where}: 'lr' is both an axis and tuned by lr_grid; use one")
        tune_steps = s.get("tune_steps")
        if tune_steps is not None and (isinstance(tune_steps, bool) or not isinstance(tune_steps, int) or tune_steps < 1):
            raise ConfigError(f"{where}: tune_steps must be an integer >= 1, got {tune_steps!r}")
        baseline = s.get("baseline")
        if baseline is None:
            baselines = {}
        elif isinstance(baseline, str):
            if baseline not in variants:
                raise ConfigError(f"{where}: baseline '{baseline}' is not a variant ({', '.join(variants)})")
            baselines = {v: baseline for v in variants if v != baseline}
        elif isinstance(baseline, dict):
            for v, b in baseline.items():
                if not (_names_a(v, variants) and _names_a(b, variants)):
                    raise ConfigError(f"{where}: baseline pair {v}: {b} names an unknown variant "
                                      f"({', '.join(variants)})")
                if v == b:
                    raise ConfigError(f"{where}: baseline pair {v}: {b} compares a variant with itself")
            baselines = dict(baseline)
        else:
            raise ConfigError(f"{where}: baseline must be a variant name or a mapping, got {baseline!r}")
        prof.studies[name] = Study(
            name=name, job_by=job_by, base=merge(defaults, s.get("base") or {}), variants={k: v or {} for k, v in variants.items()},
            axes=axes, seeds=_seeds(s.get("seeds", 1), where), lr_grid=[float(x) for x in lr_grid],
            tune_steps=tune_steps, tune_seeds=_seeds(s.get("tune_seeds", raw.get("tune_seeds", [100])), where),
            baselines=baselines)
        st = prof.studies[name]
        overlap = sorted(set(st.tune_seeds) & set(st.seeds)) if st.lr_grid else []
        if overlap:
            given = s.get("tune_seeds", raw.get("tune_seeds"))
            shown = f"{given} (a count: seeds 0..{given - 1})" if isinstance(given, int) else str(st.tune_seeds)
            raise ConfigError(f"{where}: tune_seeds {shown} and the final seeds share "
                              f"{', '.join(map(str, overlap[:5]))}{', ...' if len(overlap) > 5 else ''}: the lr "
                              "would be chosen on the runs the claims then test; use disjoint tuning seeds "
                              "(e.g. tune_seeds: [100, 101])")
    # validate everything now, before any job starts
    tune_specs(prof)
    final_specs(prof, {})
    prof.report = _report(raw.get("report") or {}, prof.studies)
    from vgbench import claims
    cs = claims.validate(raw, prof.studies, paths.FIGURE_NAMES)
    prof.questions, prof.claims = cs.questions, cs.claims
    return prof


def _report(rep, studies: dict) -> dict:
    """Validate the profile's `report:` section: every `study`/`studies` names a study, every
    `variant`/`variants` a variant of the study in scope (of any study where none is)."""
    FIGURES, TABLES = paths.FIGURE_NAMES, paths.TABLE_NAMES
    if not isinstance(rep, dict):
        raise ConfigError(f"profile: 'report' must be a mapping with keys {', '.join(REPORT_KEYS)}")
    for k in rep:
        if k not in REPORT_KEYS:
            raise _unknown(k, REPORT_KEYS, "report")
    if rep.get("init_study") is not None and not _names_a(rep["init_study"], studies):
        raise ConfigError(f"report.init_study: unknown study {rep['init_study']!r}; studies: {', '.join(studies)}")
    for part, names in (("figures", FIGURES), ("tables", TABLES)):
        specs = rep.get(part) or {}
        if not isinstance(specs, dict):
            raise ConfigError(f"report.{part} must be a mapping name -> spec")
        for name, spec in specs.items():
            if name not in names:
                raise ConfigError(f"report.{part}: unknown {part[:-1]} {name!r}; allowed: {', '.join(names)}")
            _check_spec(spec, studies, f"report.{part}.{name}", None)
    return rep


def _names_a(value, names: dict) -> bool:
    """value is one of the keys of `names` (False, not TypeError, for a list or mapping given by mistake)."""
    return isinstance(value, str) and value in names


def _check_spec(spec, studies: dict, where: str, study: str | None) -> None:
    if isinstance(spec, list):
        for i, s in enumerate(spec):
            _check_spec(s, studies, f"{where}[{i}]", study)
        return
    if not isinstance(spec, dict):
        return
    if "study" in spec:
        if not _names_a(spec["study"], studies):
            raise ConfigError(f"{where}: unknown study {spec['study']!r}; studies: {', '.join(studies)}")
        study = spec["study"]
    named = spec.get("studies") or []
    if not isinstance(named, list):
        raise ConfigError(f"{where}.studies must be a list of study names, got {named!r}")
    for s in named:
        if not _names_a(s, studies):
            raise ConfigError(f"{where}: unknown study {s!r}; studies: {', '.join(studies)}")
    known = list(studies[study].variants) if study else sorted({v for s in studies.values() for v in s.variants})
    for k, typ, what in (("variants", list, "a list of variant names"), ("where", dict, "a mapping axis -> value")):
        if spec.get(k) is not None and not isinstance(spec[k], typ):
            raise ConfigError(f"{where}.{k} must be {what}, got {spec[k]!r}")
    vs = ([spec["variant"]] if "variant" in spec else []) + list(spec.get("variants") or [])
    for v in vs:
        if v not in known:
            raise ConfigError(f"{where}: unknown variant {v!r}{f' of study {study!r}' if study else ''}; "
                              f"allowed: {', '.join(known)}")
    for k, v in (spec.get("where") or {}).items():
        axes = studies[study].axes if study else {}
        if k not in axes or v not in axes[k]:
            raise ConfigError(f"{where}.where: {k}={v!r} is not a value of an axis of study {study!r}; axes: "
                              + (", ".join(f"{a} {vals}" for a, vals in axes.items()) or "none"))
    for k, v in spec.items():
        if isinstance(v, (dict, list)) and k not in ("variants", "studies", "where"):
            _check_spec(v, studies, f"{where}.{k}", study)


def _conditions(study: Study):
    """(variant, labels, config mapping without seed) for every crossed condition."""
    keys = list(study.axes)
    for variant, over in study.variants.items():
        for values in itertools.product(*(study.axes[k] for k in keys)):
            m = merge(study.base, over)
            for k, v in zip(keys, values):
                m = merge(m, _nest(k, v))
            yield variant, tuple(zip(keys, values)), m


def _make(study: Study, stage: str, variant: str, labels: tuple, mapping: dict, extra: tuple = (),
          tune_key: str | None = None) -> RunSpec:
    slug = "-".join(f"{k.split('.')[-1].replace('_', '')}{_slug(v)}" for k, v in labels + extra)
    where = f"study '{study.name}', run {variant}{' ' + slug if slug else ''} seed {mapping.get('seed')}"
    try:
        cfg = load(mapping, where=where)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
    h = config_hash(cfg.identity())[:8]
    parts = [study.name, variant] + ([slug] if slug else []) + [f"s{cfg.seed}", h]
    run_id = ("tune-" if stage == "tune" else "") + "-".join(parts)
    no_lr = cfg.condition()
    no_lr.pop("lr")
    return RunSpec(run_id=run_id, study=study.name, variant=variant, stage=stage, labels=labels + extra,
                   cfg=cfg, job=f"{stage}-{study.name}" + (f"-{variant}" if study.job_by == "variant" else ""),
                   tune_key=tune_key or f"{study.name}-{variant}-{config_hash(no_lr)[:8]}")


def tune_specs(prof: Profile) -> list[RunSpec]:
    """Every condition x lr_grid x tune seed, for studies that tune their lr."""
    out = []
    for study in prof.studies.values():
        for variant, labels, m in _conditions(study):
            key = tune_key_of(study, variant, labels, m) if study.lr_grid else None
            for lr in study.lr_grid:
                for seed in study.tune_seeds:
                    mm = merge(m, {"lr": lr, "seed": seed})
                    if study.tune_steps:
                        mm["steps"] = study.tune_steps
                    out.append(_make(study, "tune", variant, labels, mm, (("lr", lr),), tune_key=key))
    _check_unique(out)
    return out


def tune_key_of(study: Study, variant: str, labels: tuple, m: dict) -> str:
    return _make(study, "final", variant, labels, merge(m, {"seed": study.seeds[0]})).tune_key


def unselected(prof: Profile, selected: dict[str, float]) -> list[str]:
    """The tuned conditions (tune keys) that `selected` holds no lr for: a study added to the
    profile after its lrs were selected."""
    keys = (tune_key_of(study, variant, labels, m) for study in prof.studies.values() if study.lr_grid
            for variant, labels, m in _conditions(study))
    return [k for k in keys if k not in selected]


def final_specs(prof: Profile, selected: dict[str, float] | None, partial: bool | str = False) -> list[RunSpec]:
    """Final seeds of every condition; a tuned study's lr comes from `selected`
    (tune_key -> lr). With selected=None a tuned condition's lr must already be known:
    pass {} to expand with the base lr (used for validation and listing). partial=True leaves
    out the conditions `selected` does not cover (a study added since the selection was made)
    instead of refusing them; partial="provisional" expands them with the base lr, as {} would
    (for listing: their run ids change once their lr is selected)."""
    out = []
    for study in prof.studies.values():
        for variant, labels, m in _conditions(study):
            if study.lr_grid and selected:
                key = tune_key_of(study, variant, labels, m)
                if key not in selected:
                    if not partial:
                        raise ConfigError(f"no selected lr for {key}; run the tune stage first")
                    if partial != "provisional":
                        continue
                elif selected[key] is None:
                    continue  # every lr diverged in tuning: recorded in selected_lr.csv, no final runs
                else:
                    m = merge(m, {"lr": selected[key]})
            for seed in study.seeds:
                out.append(_make(study, "final", variant, labels, merge(m, {"seed": seed})))
    _check_unique(out)
    return out


def _check_unique(specs: list[RunSpec]) -> None:
    """Two variants of one study that resolve to the same config would be one condition
    counted twice."""
    seen: dict[tuple, RunSpec] = {}
    for s in specs:
        key = (s.study, s.stage, config_hash(s.cfg.identity()))
        if key in seen:
            a = seen[key]
            raise ConfigError(f"study '{s.study}': variants '{a.variant}' and '{s.variant}' give the same run "
                              f"config ({s.run_id}); make them differ or drop one")
        seen[key] = s


def jobs(specs: list[RunSpec]) -> dict[str, list[RunSpec]]:
    out: dict[str, list[RunSpec]] = {}
    for s in specs:
        out.setdefault(s.job, []).append(s)
    return out


def job_seconds(by_job: dict[str, list[RunSpec]]) -> dict[str, float]:
    """Each job's estimated seconds (config.estimate_seconds summed over its runs; `by_job` as
    jobs() gives it): the pipeline's job priority, longest first."""
    return {j: sum(estimate_seconds(s.cfg) for s in sp) for j, sp in by_job.items()}
