"""Cards and training configs ship inside the package: lookup order, the no-config error, and a
`masra train` started outside the checkout (`make test-package` checks the built wheel itself)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from click.testing import CliRunner

import masra
from masra.datasets.card import CARD_DIR_ENV, builtin_card_dir, find_card, load_card
from masra.grounding.config import TrainConfig, builtin_config_dir, find_train_config, load_train_config
from masra.grounding.config.train import CONFIG_DIR_ENV
from masra.pipelines.cli import main

REPO = Path(__file__).resolve().parents[1]
CARD = """name: mine
format: qvhighlights
root: mydata
annotations: {val: val.jsonl}
clip_len: 2.0
max_clips: 10
video_features: {vis: {dir: features/vis, dim: 4}}
text_features: {dir: features/text, dim: 4}
"""


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty current folder outside the checkout, with neither lookup variable set."""
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.delenv(CARD_DIR_ENV, raising=False)
    monkeypatch.delenv(CONFIG_DIR_ENV, raising=False)
    return cwd


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_cards_and_configs_are_package_data() -> None:
    package = Path(masra.__file__).parent
    assert builtin_card_dir() == package / "cards" and builtin_config_dir() == package / "configs"
    assert {"qvhighlights", "charades", "charades_jsonl", "tacos", "fixture", "openworld"} <= {
        p.stem for p in builtin_card_dir().glob("*.yaml")
    }
    pyproject = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    [line] = [x for x in pyproject.splitlines() if x.startswith('"masra" = [')]  # under package-data
    globs = json.loads(line.split("=", 1)[1].split("#")[0])
    shipped = [*builtin_card_dir().glob("*.yaml"), *builtin_config_dir().glob("*.yaml")]
    for path in shipped:
        rel = path.relative_to(package)
        assert any(rel.match(g) for g in globs), f"{rel} is not in [tool.setuptools.package-data] masra"


def test_card_lookup_order(elsewhere: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = tmp_path / "env1", tmp_path / "env2"
    env_cards = [_write(d / "mine.yaml", CARD) for d in (first, second)]
    local = _write(elsewhere / "data" / "datasets" / "mine.yaml", CARD)
    monkeypatch.setenv(CARD_DIR_ENV, f"{first}:{second}")
    assert find_card("mine") == first / "mine.yaml"
    env_cards[0].unlink()
    assert find_card("mine") == second / "mine.yaml"
    monkeypatch.delenv(CARD_DIR_ENV)
    assert find_card("mine").resolve() == local.resolve()
    # The shipped card, unless the user's project has its own of that name.
    assert find_card("qvhighlights") == builtin_card_dir() / "qvhighlights.yaml"
    own = _write(elsewhere / "data" / "datasets" / "qvhighlights.yaml", CARD)
    assert find_card("qvhighlights").resolve() == own.resolve()
    # A path is taken as it is, wherever it is.
    assert find_card(str(env_cards[1])) == env_cards[1]


def test_relative_root_is_relative_to_the_current_folder(elsewhere: Path, tmp_path: Path) -> None:
    card = load_card(_write(tmp_path / "cards" / "mine.yaml", CARD))
    assert card.annotation_path("val") == Path("mydata/val.jsonl")  # not under tmp_path/cards
    shipped = load_card("qvhighlights")
    assert shipped.root == Path("data/qvhighlights") and not shipped.root.is_absolute()


def test_unknown_card_names_every_place_looked(
    elsewhere: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CARD_DIR_ENV, str(tmp_path / "mycards"))
    with pytest.raises(FileNotFoundError) as e:
        find_card("qvhighlight")
    msg = str(e.value)
    for place in (tmp_path / "mycards", elsewhere / "data" / "datasets", builtin_card_dir()):
        assert str(place) in msg, msg
    assert "known cards: charades, charades_jsonl, fixture" in msg


def test_config_lookup_order(elsewhere: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shipped = builtin_config_dir() / "fixture.yaml"
    assert find_train_config("fixture") == shipped
    assert find_train_config(str(tmp_path / "my" / "fixture.yaml")) == shipped  # a card path: its stem
    local = _write(elsewhere / "configs" / "fixture.yaml", "epochs: 3\n")
    assert find_train_config("fixture").resolve() == local.resolve()
    env = _write(tmp_path / "envcfg" / "fixture.yaml", "epochs: 4\n")
    monkeypatch.setenv(CONFIG_DIR_ENV, str(tmp_path / "envcfg"))
    assert find_train_config("fixture") == env
    assert load_train_config("fixture").epochs == 4
    explicit = _write(tmp_path / "explicit.yaml", "epochs: 5\n")
    assert load_train_config("fixture", explicit).epochs == 5


def test_a_card_without_a_config_is_an_error_naming_every_place(
    elsewhere: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    card = _write(tmp_path / "cards" / "mine.yaml", CARD)
    monkeypatch.setenv(CONFIG_DIR_ENV, str(tmp_path / "envcfg"))
    with pytest.raises(FileNotFoundError) as e:
        load_train_config(str(card))
    msg = str(e.value)
    looked = [
        tmp_path / "envcfg" / "mine.yaml",
        elsewhere / "configs" / "mine.yaml",
        builtin_config_dir() / "mine.yaml",
    ]
    for place in looked:
        assert str(place) in msg, msg
    assert "--config FILE" in msg and "--no-config" in msg
    # Opting in to the built-in defaults, and the two options together.
    assert load_train_config(str(card), no_config=True).lr == TrainConfig().lr
    with pytest.raises(ValueError, match="exclude each other"):
        load_train_config(str(card), tmp_path / "x.yaml", no_config=True)
    # A misspelt dataset name: the card's error (with the known cards) comes first.
    with pytest.raises(FileNotFoundError, match="no dataset card named 'fixtur'"):
        load_train_config("fixtur")


def test_cli_no_config_error_and_opt_in(elsewhere: Path, tmp_path: Path) -> None:
    card = _write(tmp_path / "cards" / "mine.yaml", CARD)
    runner = CliRunner()
    res = runner.invoke(main, ["train", "--dataset", str(card), "--out", "r"])
    assert res.exit_code == 1, res.output
    assert "no training config for dataset" in res.output and "--no-config" in res.output
    assert not Path("r").exists()
    res = runner.invoke(main, ["train", "--dataset", str(card), "--config", "nope.yaml"])
    assert res.exit_code == 1 and "training config not found: nope.yaml" in res.output
    res = runner.invoke(main, ["train", "--dataset", str(card), "--no-config", "--config", "x.yaml"])
    assert res.exit_code == 2 and "exclude each other" in res.output
    res = runner.invoke(main, ["ablate", "--dataset", str(card), "--out", "a"])
    assert res.exit_code == 1 and "no training config for dataset" in res.output


def test_train_outside_the_checkout_uses_the_shipped_config(
    elsewhere: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fixture = tmp_path / "fx"
    runner = CliRunner()
    res = runner.invoke(main, ["fixture", "--out", str(fixture), "--train-videos", "4", "--val-videos", "2"])
    assert res.exit_code == 0, res.output
    sets = [f"card.root={fixture}", "epochs=2", "batch_size=8", "eval_every=2", "cpu_threads=1"]
    with caplog.at_level(logging.INFO, logger="masra.grounding.config.train"):
        res = runner.invoke(
            main, ["train", "--dataset", "fixture", "--out", "run", *[a for s in sets for a in ("--set", s)]]
        )
    assert res.exit_code == 0, res.output + repr(res.exception)
    assert f"training config: {builtin_config_dir() / 'fixture.yaml'}" in caplog.text
    saved = json.loads((elsewhere / "run" / "best" / "config.json").read_text(encoding="utf-8"))["train"]
    defaults = TrainConfig()
    # Values of the shipped fixture config, each unlike the built-in default.
    assert (saved["lr"], defaults.lr) == (3.0e-4, 1.0e-4)
    assert saved["model"]["hidden_dim"] == 128 and "hidden_dim" not in defaults.model
    assert saved["loss"] == {"w_sge": 0.0} and defaults.loss == {}
