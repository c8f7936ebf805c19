"""factory.interpolate: the straight line between a base and a fine-tuned checkpoint."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="the factory needs torch")
from factory.interpolate import interpolate, main, soup  # noqa: E402
from factory.model import ModelConfig, WaveNetSeparator  # noqa: E402

pytestmark = pytest.mark.factory


def _ckpt(seed: int, **kw) -> dict:
    torch.manual_seed(seed)
    cfg = ModelConfig(bins=9, residual=4, skip=4, hidden=4, dilations=(1, 2), **kw)
    net = WaveNetSeparator(cfg)
    return {"model_config": cfg.to_dict(), "state_dict": net.state_dict(), "training": {"steps": 10 * seed}}


def test_ends_and_midpoint_and_the_record():
    base, tuned = _ckpt(1), _ckpt(2)
    for t in (0.0, 0.5, 1.0):
        mixed = interpolate(base, tuned, t)["state_dict"]
        for k, v in mixed.items():
            if v.is_floating_point():
                assert torch.allclose(v, base["state_dict"][k] * (1 - t) + tuned["state_dict"][k] * t, atol=1e-6)
    out = interpolate(base, tuned, 0.25)
    assert out["training"]["interpolation"] == {
        "base_steps": 10,
        "tuned_steps": 20,
        "t": 0.25,
        "rule": "(1 - t) * base + t * tuned, every floating-point tensor",
    }
    WaveNetSeparator(ModelConfig.from_dict(out["model_config"])).load_state_dict(out["state_dict"])


def test_refuses_other_networks_and_bad_t(tmp_path, capsys):
    with pytest.raises(ValueError, match="different networks"):
        interpolate(_ckpt(1), _ckpt(2, local=4), 0.5)
    with pytest.raises(ValueError, match="outside"):
        interpolate(_ckpt(1), _ckpt(2), 1.5)
    for name, seed in (("a.pt", 1), ("b.pt", 2)):
        torch.save(_ckpt(seed, local=4 if name == "b.pt" else 0), tmp_path / name)
    with pytest.raises(SystemExit) as e:
        main(
            [
                "--base",
                str(tmp_path / "a.pt"),
                "--tuned",
                str(tmp_path / "b.pt"),
                "--t",
                "0.5",
                "--out",
                str(tmp_path / "c.pt"),
            ]
        )
    assert e.value.code == 2 and "different networks" in capsys.readouterr().err
    assert not (tmp_path / "c.pt").exists()


def test_command_writes_the_mix_and_names_its_sources(tmp_path):
    for name, seed in (("a.pt", 1), ("b.pt", 2)):
        torch.save(_ckpt(seed), tmp_path / name)
    a, b, c = (str(tmp_path / n) for n in ("a.pt", "b.pt", "c.pt"))
    assert main(["--base", a, "--tuned", b, "--t", "0.3", "--out", c]) == 0
    rec = torch.load(c, weights_only=False)["training"]["interpolation"]
    assert rec["t"] == 0.3 and rec["base"] == a and rec["tuned"] == b


def test_soup_is_the_weighted_sum_and_keeps_the_most_trained_record():
    a, b, c = _ckpt(1), _ckpt(2), _ckpt(3)
    c["training"]["stages"] = ["the chain of a, b and c"]
    out = soup([a, b, c], [0.2, 0.3, 0.5])
    for k, v in out["state_dict"].items():
        want = 0.2 * a["state_dict"][k] + 0.3 * b["state_dict"][k] + 0.5 * c["state_dict"][k]
        assert torch.allclose(v, want, atol=1e-6)
    assert out["training"] == c["training"]  # 30 steps: the most trained source
    line = interpolate(a, b, 0.4)["state_dict"]
    two = soup([a, b], [0.6, 0.4])["state_dict"]
    assert all(torch.allclose(line[k], two[k], atol=1e-7) for k in line)
    WaveNetSeparator(ModelConfig.from_dict(out["model_config"])).load_state_dict(out["state_dict"])


@pytest.mark.parametrize(
    "weights, match",
    [([0.5, 0.6], "add up to 1"), ([1.2, -0.2], ">= 0"), ([float("nan"), 1.0], "add up to 1"), ([1.0], "one weight")],
)
def test_soup_refuses_bad_weights(weights, match):
    with pytest.raises(ValueError, match=match):
        soup([_ckpt(1), _ckpt(2)], weights)


def test_soup_refuses_other_networks():
    with pytest.raises(ValueError, match="different networks"):
        soup([_ckpt(1), _ckpt(2), _ckpt(3, local=4)], [0.3, 0.3, 0.4])


def test_soup_command_records_every_source(tmp_path, capsys):
    for name, seed in (("a.pt", 1), ("b.pt", 2), ("c.pt", 3)):
        torch.save(_ckpt(seed), tmp_path / name)
    a, b, c, out = (str(tmp_path / n) for n in ("a.pt", "b.pt", "c.pt", "soup.pt"))
    assert main(["--soup", f"{a}=0.25", "--soup", f"{b}=0.25", "--soup", f"{c}=0.5", "--out", out]) == 0
    rec = torch.load(out, weights_only=False)["training"]
    assert rec["steps"] == 30 and "interpolation" not in rec
    assert rec["soup"]["sources"] == [
        {"file": "a.pt", "steps": 10, "weight": 0.25},
        {"file": "b.pt", "steps": 20, "weight": 0.25},
        {"file": "c.pt", "steps": 30, "weight": 0.5},
    ]
    capsys.readouterr()
    for argv, said in (
        (["--soup", f"{a}=0.5", "--soup", f"{b}=0.6"], "add up to 1"),
        (["--soup", f"{a}=half", "--soup", f"{b}=0.5"], "is not PATH=WEIGHT"),
        (["--soup", f"{a}=0.5", "--soup", f"{b}=0.5", "--t", "0.5"], "not both"),
        (["--soup", f"{a}=0.5", "--soup", str(tmp_path / "missing.pt") + "=0.5"], "missing.pt"),
    ):
        with pytest.raises(SystemExit) as e:
            main([*argv, "--out", str(tmp_path / "bad.pt")])
        assert e.value.code == 2 and said in capsys.readouterr().err
    assert not (tmp_path / "bad.pt").exists()
