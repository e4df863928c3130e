"""Config: frozen dataclasses <-> YAML round trips, and rejections that name the key path."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from sciml.config import ConfigError, dump_yaml, from_dict, from_yaml, replace, save_yaml, to_dict


@dataclass(frozen=True)
class Stage:
    steps: int
    lr: float = 1e-3
    kind: Literal["adam", "lbfgs"] = "adam"


@dataclass(frozen=True)
class Train:
    name: str = "run"
    seed: int = 0
    stages: tuple[Stage, ...] = (Stage(10),)
    widths: tuple[int, ...] = (32, 32)
    out: Path | None = None
    weights: dict[str, float] = field(default_factory=dict)
    c: float = 2.0
    debug: bool = False

    def __post_init__(self):
        if self.seed < 0:
            raise ValueError("seed must be >= 0")


def test_round_trip_through_yaml(tmp_path):
    cfg = Train(
        name="x",
        stages=(Stage(5, 0.1, "adam"), Stage(7, kind="lbfgs")),
        out=Path("a/b"),
        weights={"residual": 1.0, "bc@x=-1": 10.0},
        c=math.inf,
    )
    path = save_yaml(cfg, tmp_path / "c.yaml")
    assert from_yaml(Train, path) == cfg
    assert from_dict(Train, to_dict(cfg)) == cfg


def test_defaults_and_int_to_float():
    cfg = from_dict(Train, {"c": 3, "stages": [{"steps": 2}]})
    assert cfg.c == 3.0 and isinstance(cfg.c, float)
    assert cfg.stages == (Stage(2),)
    assert from_dict(Train, None) == Train()


def test_scientific_notation_without_a_dot_is_a_number(tmp_path):
    # PyYAML (YAML 1.1) reads 1e-3 as the string '1e-3'; a user writing it means the number
    path = tmp_path / "c.yaml"
    path.write_text("c: 1e-3\nweights: {a: 5E+2, b: 1.5e3, c: -2.5e-05}\n")
    cfg = from_yaml(Train, path)
    assert cfg.c == 1e-3 and cfg.weights == {"a": 500.0, "b": 1500.0, "c": -2.5e-05}
    with pytest.raises(ConfigError, match=r"c: expected a number, got '1e'"):
        from_dict(Train, {"c": "1e"})


def test_frozen():
    with pytest.raises(AttributeError):
        Train().seed = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    "data, message",
    [
        ({"sed": 1}, r"unknown key sed in Train \(valid keys: c, debug, name, out, seed, stages, weights, widths\)"),
        ({"stages": [{"steps": 1, "lr": 0.1, "momentum": 0.9}]}, r"unknown key stages\[0\]\.momentum in Stage"),
        ({"stages": [{"lr": 0.1}]}, r"missing required key stages\[0\]\.steps"),
        ({"seed": "1"}, r"seed: expected an integer, got '1'"),
        ({"seed": 1.5}, r"seed: expected an integer"),
        ({"seed": True}, r"seed: expected an integer"),
        ({"debug": "yes"}, r"debug: expected true/false"),
        ({"c": "fast"}, r"c: expected a number"),
        ({"stages": [{"steps": 1, "kind": "sgd"}]}, r"stages\[0\]\.kind: 'sgd' is not one of \['adam', 'lbfgs'\]"),
        ({"widths": "32"}, r"widths: expected a list"),
        ({"widths": [32, "x"]}, r"widths\[1\]: expected an integer"),
        ({"weights": {"a": "b"}}, r"weights\.a: expected a number"),
        ({"seed": -1}, r"seed must be >= 0"),
        ({"stages": 3}, r"stages: expected a list"),
    ],
)
def test_rejections_name_the_key_path(data, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(Train, data)


def test_yaml_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        from_yaml(Train, tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("seed: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        from_yaml(Train, bad)
    top = tmp_path / "top.yaml"
    top.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="expected a mapping at the top level"):
        from_yaml(Train, top)
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("seed: 1\nsteps: 3\n")
    with pytest.raises(ConfigError, match=r"unknown.yaml: unknown key steps"):
        from_yaml(Train, unknown)


def test_safe_load_only(tmp_path):
    evil = tmp_path / "evil.yaml"
    evil.write_text("name: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        from_yaml(Train, evil)


def test_replace_validates():
    cfg = Train()
    assert replace(cfg, seed=3).seed == 3
    with pytest.raises(ConfigError, match="seed: expected an integer"):
        replace(cfg, seed="3")


def test_dump_keeps_declaration_order():
    text = dump_yaml(Train())
    keys = [line.split(":")[0] for line in text.splitlines() if line and not line.startswith((" ", "-"))]
    assert keys == ["name", "seed", "stages", "widths", "out", "weights", "c", "debug"]
