"""Run profiles: one validated YAML file chooses the scale of a whole book run.

A profile is the only thing that differs between the ``tiny`` (tests), ``cpu`` (a 2-core
laptop) and ``gpu`` (paper scale) runs. Unknown keys are rejected with the file and the key
path, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError, field_validator, model_validator

from mlsearch_lib.config.paths import PROJECT_ROOT

PROFILES_DIR = PROJECT_ROOT / "profiles"
Backbone = Literal["tfidf", "bi_encoder", "hybrid", "hybrid_nl", "hybrid_cat", "hybrid_pmi", "hybrid_ctr", "hybrid_ctr_gbt", "encoder", "llm"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _bf16_field(value: object) -> object:
    """``bf16: auto`` becomes this machine's answer when the profile loads, so cache keys, saved
    models and tables record the precision that ran (:func:`mlsearch_lib.config.hardware.native_bf16`)."""
    if value != "auto":
        return value  # pydantic parses (or refuses) the rest
    from mlsearch_lib.config.hardware import native_bf16

    return native_bf16()


class DataConfig(_Strict):
    """Which files a run reads (relative to the data dir) and how much of them."""

    qc_file: str = "QC/train_QC.txt"
    qi_file: str = "QI/train_QI_homedepot.txt"
    qi_standin: bool = True  # label every QI result "stand-in, English"
    # per task, a stratified sample of the training file; None = all rows
    max_rows: dict[Literal["QC", "QI"], PositiveInt | None] = Field(default_factory=lambda: {"QC": None, "QI": None})


class PromptConfig(_Strict):
    """Prompt components (the seed's LT / HCT / SIT / DG / ICL / CoT, plus query translation)."""

    lt: bool = True
    hct: bool = True
    sit: bool = False
    dg: bool = False
    qt: bool = False
    icl: bool = True
    cot: bool = True
    #: neighbour items: after the query, up to ``nb`` distinct items that the training queries
    #: nearest to it (frozen ``nb_model`` vectors) were judged relevant to; 0 = off (:mod:`mlsearch_lib.features.neighbours`)
    nb: int = Field(default=0, ge=0)
    nb_model: str = "intfloat/multilingual-e5-small"
    template: str = "alpaca"  # a file in mlsearch_lib/templates/


class EncoderConfig(_Strict):
    """Cross-encoder backbone (query and category/title as a text pair)."""

    model: str = "intfloat/multilingual-e5-small"
    max_length: PositiveInt = 64
    batch_size: PositiveInt = 32
    epochs: float = Field(1.0, gt=0)
    lr: float = Field(5e-5, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    warmup_ratio: float = Field(0.05, ge=0, lt=1)
    freeze_embeddings: bool = True
    lora: bool = False
    max_train_rows: PositiveInt | None = None
    #: None: fine-tune every layer. N: train only the top N layers, the pooler and the head on
    #: cached outputs of the frozen layers below, so a CPU epoch sees every row at ~N/12 the cost.
    train_top_layers: int | None = Field(default=None, ge=1)
    #: training batches of rows of similar length: QC pads 1.2x, QI 1.5x fewer tokens than random batches
    group_by_length: bool = True
    #: what the head reads: "cls" (BERT's pooler on the first token, as transformers does) or
    #: "mean" (the masked mean of the top layer, the pooling e5 was pre-trained with; needs
    #: train_top_layers, up to the layer count, since only the top stack is ours to change)
    pooling: Literal["cls", "mean"] = "cls"
    #: train and score in bf16 autocast (weights, optimizer state and the frozen-layer cache stay
    #: fp32): a top-4 training step takes 0.68x the time on a CPU with avx512_bf16, more on a GPU;
    #: "auto" = where the hardware computes bf16 natively (emulated, training ran at 0.05x fp32)
    bf16: bool = False
    bf16_auto = field_validator("bf16", mode="before")(_bf16_field)
    #: text put before the query and before the item of every pair, e.g. e5's own
    #: ``["query: ", "passage: "]``, so the frozen layers read the pair as they were pre-trained
    pair_prefixes: tuple[str, str] = ("", "")
    #: knowledge distillation: train on ``(1 - distill) * label + distill * p_teacher``, the
    #: ``teacher`` kind's p(yes) predicted out-of-fold *inside* the training rows (grouped folds),
    #: so neither a held-out fold nor a row's own label reaches its teacher score
    distill: float = Field(default=0.0, ge=0.0, le=1.0)
    teacher: Literal["tfidf", "bi_encoder", "hybrid", "hybrid_nl", "hybrid_cat", "hybrid_pmi", "hybrid_ctr", "hybrid_ctr_gbt", "llm"] = "hybrid"


class LLMConfig(_Strict):
    """Causal-LM backbone with LoRA; p(yes) from the yes/no logits in one forward pass."""

    model: str = "google/gemma-3-270m"
    lora_r: PositiveInt = 16
    lora_alpha: PositiveInt = 16
    lora_dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )
    lr: float = Field(1e-4, gt=0)
    scheduler: str = "cosine"
    warmup_ratio: float = Field(0.05, ge=0, lt=1)
    epochs: float = Field(2.0, gt=0)
    batch_size: PositiveInt = 8
    grad_accum: PositiveInt = 1
    cutoff_len: PositiveInt = 1024
    load_in_4bit: bool = False
    bf16: bool = False  # or "auto", as for the encoder
    bf16_auto = field_validator("bf16", mode="before")(_bf16_field)
    gradient_checkpointing: bool = False  # recompute each layer in backward: ~L x less activation memory
    max_train_rows: PositiveInt | None = None
    score_batch_size: PositiveInt = 16
    # scoring batches pad a row by at most this share of its batch's longest row. On a CPU every pad
    # costs a real token (sorting alone left ~12% of the scoring benchmark's body tokens as pads); on
    # a GPU each batch's fixed cost dominates short bodies: the gpu profiles take 1.0 (reports/bench/gpu.md)
    pad_slack: float = Field(0.1, ge=0.0)
    engine: Literal["transformers", "vllm"] = "transformers"  # scoring engine; vllm: the optional gpu extra
    tensor_parallel_size: PositiveInt = 1  # vllm scoring: GPUs one model is split over


class ContrastiveConfig(_Strict):
    """The contrastive bi-encoder of backbone ``hybrid_ctr`` (:mod:`mlsearch_lib.features.contrastive`):
    each of its two cross-fitted towers tunes e5's top layers on one half of the training queries."""

    train_top_layers: int = Field(2, ge=1)
    epochs: float = Field(2.0, gt=0)
    batch_size: int = Field(64, ge=2)  # the in-batch negatives: every other positive path of the batch
    lr: float = Field(1e-4, gt=0)
    #: the trained layers' forward and backward in bf16 autocast (the cosines and loss in fp32; the
    #: features are computed in fp32): "auto" = where the hardware computes bf16 natively
    bf16: bool = False
    bf16_auto = field_validator("bf16", mode="before")(_bf16_field)


class GenerationConfig(_Strict):
    """Description generation (DG) and query translation (QT): engine, sampling, how many rows."""

    engine: Literal["transformers", "vllm"] = "transformers"  # vllm: the optional gpu extra
    model: str = "google/gemma-3-270m"
    tensor_parallel_size: PositiveInt = 1  # vllm only
    temperature: float = Field(0.2, ge=0)  # the seed's DG sampling
    top_p: float = Field(0.9, gt=0, le=1)
    max_new_tokens: PositiveInt = 256
    qt_max_new_tokens: PositiveInt = 32
    batch_size: PositiveInt = 8
    dg_rows: PositiveInt | None = None  # QI rows described (a sample); None = every row
    qt_rows: PositiveInt | None = None  # non-English queries translated per task; None = every one
    template: str = "generation"  # a file in mlsearch_lib/templates/


class ValidationConfig(_Strict):
    """Query-grouped K folds, or one query-grouped train/dev split (``mode: split``, paper scale:
    one model per task and arm instead of K); ``train_languages`` reproduces the official
    unseen-language setting."""

    #: ``folds``: every row is scored out of fold by K models. ``split``: a query-grouped
    #: ``dev_share`` of the rows is scored by one model trained on the rest; the dev rows are cut
    #: into ``folds`` query-grouped parts for fold noise and for thresholds tuned on the other parts.
    mode: Literal["folds", "split"] = "folds"
    dev_share: float = Field(0.1, gt=0, lt=1)
    folds: int = Field(5, ge=2)
    train_languages: list[str] | None = None
    threshold_shrinkage: float = Field(200.0, ge=0)  # rows at which a language's own threshold gets half weight
    # models also run in the official setting (train en es fr ja ko pt, evaluate on all)
    official_models: list[Backbone] = Field(default_factory=lambda: ["tfidf"])


class BudgetConfig(_Strict):
    """What a book run may cost, checked before its first notebook (``python -m mlsearch_lib.bench budget``)."""

    gpu_hours: float | None = Field(None, gt=0)  # None: no check (the cpu and tiny books)
    gpus: int = Field(1, ge=1)  # GPUs the jobs are spread over: the plan's wall time assumes them


class RefineConfig(_Strict):
    """Quality refinement: which out-of-fold model judges the labels, and the seed's rules."""

    model: Backbone = "tfidf"  # gives the out-of-fold p(yes) the model rule reads
    eval_model: Backbone = "tfidf"  # trained once per action to measure what refinement buys
    model_rule: bool = True
    hi: float = Field(0.9, ge=0, le=1)  # label 0 with out-of-fold p(yes) >= hi is doubtful
    lo: float = Field(0.1, ge=0, le=1)  # label 1 with p(yes) <= lo is doubtful
    lexical_rule: bool = True
    neg_percentile: float = Field(90.0, ge=0, le=100)  # HI = this percentile of label-0 similarity, per language
    pos_percentile: float = Field(10.0, ge=0, le=100)  # LO = this percentile of label-1 similarity
    min_language_rows: PositiveInt = 100  # languages with fewer rows use the global thresholds
    keyword_rule: bool = True
    keywords_file: str = "qr_keywords.yaml"  # in mlsearch_lib/resources/
    min_weight: float = Field(0.2, ge=0, le=1)  # floor of a down-weighted row's training weight

    @model_validator(mode="after")
    def _hi_above_lo(self) -> "RefineConfig":
        if self.hi < self.lo:
            raise ValueError(f"hi ({self.hi}) must not be below lo ({self.lo})")
        return self


Flag = Literal["qr", "lt", "hct", "sit", "dg", "qt", "icl", "cot"]


def _seed_arms() -> dict[str, dict[str, list[Flag]]]:
    """The seed's Table 4 arms, plus the "none" arm it omitted."""
    return {"QC": {"none": [], "LT": ["lt"], "HCT": ["hct"], "LT+HCT": ["lt", "hct"], "QR+LT+HCT": ["qr", "lt", "hct"]},
            "QI": {"none": [], "LT": ["lt"], "SIT": ["sit"], "DG": ["dg"], "LT+SIT+DG": ["lt", "sit", "dg"],
                   "QR+LT+SIT+DG": ["qr", "lt", "sit", "dg"]}}


class AblationConfig(_Strict):
    """Notebook 06: arms (named sets of components) and backbones, all on the same rows and folds."""

    backbone: Backbone = "bi_encoder"  # trains every arm
    #: with ``backbone: llm``, the causal LM the arms train (None: ``llm.model``): at paper scale a
    #: smaller one than the submitted systems' (the seed's Table 3 ranks 7B close to 14B)
    arms_llm: str | None = None
    arms: dict[Literal["QC", "QI"], dict[str, list[Flag]]] = Field(default_factory=_seed_arms)
    always: list[Flag] = Field(default_factory=list)  # components on in every arm (e.g. icl, cot for an LLM)
    qr_action: Literal["drop", "down-weight"] = "down-weight"  # what the QR flag does to flagged rows
    # Table 3: backbones compared with the profile's prompt; causal LMs beyond ``llm.model`` by label
    backbones: list[Literal["all_yes", Backbone]] = Field(default_factory=lambda: ["all_yes", "tfidf", "bi_encoder", "hybrid", "hybrid_nl", "encoder", "llm"])
    llm_models: dict[str, str] = Field(default_factory=dict)
    # a stratified sample of the prepared rows (every arm uses the same); None = all rows
    max_rows: dict[Literal["QC", "QI"], int | None] = Field(default_factory=lambda: {"QC": None, "QI": None})


class Profile(_Strict):
    #: names folders under build/ and reports/: a plain name, never a path
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    seed: int = 13
    backbone: Backbone = "encoder"  # the main model: notebook 05 predicts with it
    compare: list[Backbone] = Field(default_factory=list)  # also trained and reported in 04
    # a second model whose logit joins the main model's in one logistic regression: 04 reports the
    # stack, 05 tunes thresholds on it and submits it (mlsearch_lib/models/stacking.py); None = the main model alone
    stack_with: Backbone | None = None
    tasks: list[Literal["QC", "QI"]] = Field(default_factory=lambda: ["QC", "QI"])
    data: DataConfig = Field(default_factory=DataConfig)
    prompt: PromptConfig = Field(default_factory=PromptConfig)
    encoder: EncoderConfig = Field(default_factory=EncoderConfig)
    llm: LLMConfig = Field(default_factory=LLMConfig)
    contrastive: ContrastiveConfig = Field(default_factory=ContrastiveConfig)
    generation: GenerationConfig = Field(default_factory=GenerationConfig)
    validation: ValidationConfig = Field(default_factory=ValidationConfig)
    refine: RefineConfig = Field(default_factory=RefineConfig)
    ablation: AblationConfig = Field(default_factory=AblationConfig)
    budget: BudgetConfig = Field(default_factory=BudgetConfig)
    #: section overrides for one task, e.g. ``{QI: {encoder: {epochs: 2}}}``: the tasks differ in
    #: size and text length, so one budget rarely suits both. :meth:`for_task` applies them.
    per_task: dict[Literal["QC", "QI"], dict[str, Any]] = Field(default_factory=dict)

    def for_task(self, task: str) -> "Profile":
        """This profile with ``per_task[task]`` merged in (itself when there is none)."""
        overrides = self.per_task.get(task)  # type: ignore[call-overload]
        return Profile.model_validate(_merge(self.model_dump(), overrides)) if overrides else self


class ProfileError(ValueError):
    """A profile file is missing, unreadable or invalid; the message names file and key."""


def profile_path(name_or_path: str | Path) -> Path:
    """``cpu`` → ``profiles/cpu.yaml``; an existing path is taken as is."""
    path = Path(name_or_path)
    if path.suffix in {".yaml", ".yml"} or path.exists():
        return path
    return PROFILES_DIR / f"{name_or_path}.yaml"


def _merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _without(base: dict[str, Any], keys: dict[str, Any]) -> dict[str, Any]:
    """``base`` less every leaf that ``keys`` sets (same nested path)."""
    out = {}
    for key, value in base.items():
        if key not in keys:
            out[key] = value
        elif isinstance(value, dict) and isinstance(keys[key], dict):
            out[key] = _without(value, keys[key])
    return out


_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def parse_sets(items: list[str]) -> dict[str, Any]:
    """``["llm.lr=2e-4", "data.max_rows.QC=100"]`` -> nested overrides (values read as YAML)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set takes key=value (dotted key), got {item!r}")
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"--set {item!r}: {part!r} is set to a value and used as a section")
        parsed = yaml.safe_load(value)
        if isinstance(parsed, str) and _NUMBER.fullmatch(parsed.strip()):
            parsed = float(parsed)  # YAML 1.1 reads 2e-4 (no dot) as a string
        node[parts[-1]] = parsed
    return out


def _read_raw(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A profile file's mapping, merged over its ``base`` profile's (``base: gpu``: the same
    protocol at another size) when it names one."""
    if not path.is_file():
        known = sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))
        raise ProfileError(f"{path}: no such profile (known: {', '.join(known)})")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ProfileError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ProfileError(f"{path}: a profile is a mapping of keys, got {type(raw).__name__}")
    base = raw.pop("base", None)
    if base is None:
        return raw
    base_path = profile_path(base) if Path(str(base)).suffix else PROFILES_DIR / f"{base}.yaml"
    if base_path.resolve() in seen or base_path.resolve() == path.resolve():
        raise ProfileError(f"{path}: base: {base} makes a cycle")
    parent = _read_raw(base_path, (*seen, path.resolve()))
    parent.pop("name", None)
    return _merge(parent, raw)


def load_profile(name_or_path: str | Path, overrides: dict[str, Any] | None = None) -> Profile:
    """Read, merge ``overrides`` (nested dicts) into, and validate a profile."""
    path = profile_path(name_or_path)
    raw = _read_raw(path)
    raw.setdefault("name", path.stem)
    overrides = overrides or {}
    shared = {k: v for k, v in overrides.items() if k != "per_task"}
    if isinstance(raw.get("per_task"), dict):  # an explicit override beats the file's per-task value
        raw["per_task"] = {t: _without(e, shared) if isinstance(e, dict) else e for t, e in raw["per_task"].items()}
    try:
        profile = Profile.model_validate(_merge(raw, overrides))
    except ValidationError as exc:
        raise ProfileError(f"{path}: {_problems(exc)}") from None
    for task in profile.per_task:  # a bad per-task key fails now, naming the file and the task
        try:
            profile.for_task(task)
        except ValidationError as exc:
            raise ProfileError(f"{path}: {_problems(exc, f'per_task.{task}.')}") from None
    return profile


def _problems(exc: ValidationError, prefix: str = "") -> str:
    problems = []
    for err in exc.errors():
        where = prefix + ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            problems.append(f"unknown key '{where}'")
        else:
            problems.append(f"'{where}': {err['msg']} (got {err.get('input')!r})")
    return "; ".join(problems)
