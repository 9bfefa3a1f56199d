"""``--scales`` syntax shared by ``zoo eval`` and ``zoo bench`` (zoo_cli.evaluation.settings.parse_scales)."""

from __future__ import annotations

import pytest

from zoo_cli.errors import UsageError
from zoo_cli.evaluation.settings import parse_scales

SEED = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)


@pytest.mark.parametrize("text,expected", [
    ("0.5,0.75", (0.5, 0.75)),
    ("[0.5,0.75]", (0.5, 0.75)),
    (" 1.25, 0.75 ,1 ", (0.75, 1.0, 1.25)),  # sorted, as the registry rows list them
    ("[0.5:0.25:1.75]", SEED),
    ("0.5:0.25:1.75", SEED),
    (" [ 0.5:0.25:1.75 ] ", SEED),
    ("0.75:0.25:1.25", (0.75, 1.0, 1.25)),
    ("0.1:0.1:0.7", (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)),  # float steps that do not add up exactly
    ("0.5:0.3:1.75", (0.5, 0.8, 1.1, 1.4, 1.7)),        # end inclusive only when reached; never beyond
    ("1:1:1", (1.0,)),
    ("1", (1.0,)),
])
def test_parse_scales_accepts(text, expected):
    assert parse_scales(text) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["a,b", "0,1", "1.75:0.25:0.5", "0.5:0:1", "0.5:1", "[0.5,1", "0.5,1]", "", "[]"])
def test_parse_scales_rejects(text):
    with pytest.raises(UsageError, match="--scales"):
        parse_scales(text)


def test_eval_accepts_the_range_without_brackets(zoo_home, tmp_path, monkeypatch):
    """The QA case: 'zoo eval ... --scales 0.5:0.25:1.0' failed while bench accepted it."""
    import json

    from click.testing import CliRunner

    from tests.support.datasets import make_voc
    from tests.support.eval_graphs import build_graph, install, registry_entry
    from zoo_cli.cli.app import cli

    reg = tmp_path / "registry.yaml"
    reg.write_text("version: 1\ncheckpoints:\n" + registry_entry("tiny_voc", "voc", 21, 255))
    monkeypatch.setenv("ZOO_REGISTRY", str(reg))
    install(zoo_home, "tiny_voc", build_graph(crop=(40, 40), num_classes=21).SerializeToString())
    make_voc(tmp_path / "voc", n=1)
    result = CliRunner().invoke(cli, ["eval", "tiny_voc", "--data-dir", str(tmp_path / "voc"), "--scales",
                                      "0.5:0.25:1.0", "--json", "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["scales"] == [0.5, 0.75, 1.0]
