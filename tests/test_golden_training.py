"""Golden numbers: a fixed-seed CPU run on the toy world must train and score exactly as recorded.

The re-layout of issue 14 moves code without changing behaviour; this test pins that down. It runs
the MASRA model (with priors) and the baseline (``masra: False``) for 2 epochs of 5 steps on the toy
world of ``_train_world`` (deterministic algorithms, one CPU thread, no mixed precision) and compares

- the first 10 training steps' losses (``log_every=1``: the weighted total ``loss`` and every
  unweighted named ``loss_<name>``), and
- the val metrics (``brief``, as written to ``metrics.jsonl``) after the 2nd epoch

with the numbers recorded below (relative tolerance 1e-5). If a change is *meant* to alter training,
regenerate them (print the same fields from a run of ``_golden_run``) and say why in the commit.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _train_world import make_world, tiny_overrides

from masra.grounding.config import load_train_config
from masra.grounding.train.recipe import run_training

RTOL = 1e-5
STEPS = 10

# Generated with the code of commit 1ef87d8 (lr 3e-3, seed 7; 40 train / 8 val videos, batch 8).
MASRA_LOSSES: dict[str, list[float]] = {
    "loss": [
        29.42804527282715,
        28.119884490966797,
        23.726964950561523,
        21.55554962158203,
        20.11601448059082,
        17.677562713623047,
        17.1430721282959,
        16.967910766601562,
        15.8853120803833,
        17.243135452270508,
    ],
    "loss_span_l1": [
        0.594572901725769,
        0.5260187387466431,
        0.494099885225296,
        0.46954795718193054,
        0.39892151951789856,
        0.35081225633621216,
        0.3365479111671448,
        0.3452757000923157,
        0.2899066209793091,
        0.36054614186286926,
    ],
    "loss_span_giou": [
        0.8972932696342468,
        0.8682934045791626,
        0.8895857334136963,
        0.8814804553985596,
        0.8816268444061279,
        0.8637949228286743,
        0.891846239566803,
        1.0180518627166748,
        0.9626054763793945,
        1.124791145324707,
    ],
    "loss_label": [
        0.5094282627105713,
        0.5882837772369385,
        0.6075100302696228,
        0.4960717260837555,
        0.5401642918586731,
        0.5150029063224792,
        0.490033358335495,
        0.5061560869216919,
        0.5146469473838806,
        0.4988521635532379,
    ],
    "loss_span_l1_0": [
        0.6204761862754822,
        0.5602063536643982,
        0.5009346008300781,
        0.4837788939476013,
        0.4055607318878174,
        0.35988515615463257,
        0.3408385217189789,
        0.3394097685813904,
        0.2944798171520233,
        0.35867899656295776,
    ],
    "loss_span_giou_0": [
        0.8919689059257507,
        0.8595391511917114,
        0.8825442790985107,
        0.8634425401687622,
        0.8815667629241943,
        0.8536147475242615,
        0.8934529423713684,
        1.0125187635421753,
        0.9732974171638489,
        1.1245797872543335,
    ],
    "loss_label_0": [
        0.45340627431869507,
        0.6011708378791809,
        0.5115752220153809,
        0.492773175239563,
        0.5351255536079407,
        0.5149675011634827,
        0.49447956681251526,
        0.47503235936164856,
        0.5046318173408508,
        0.49954938888549805,
    ],
    "loss_saliency_margin": [
        0.2522202134132385,
        0.16446234285831451,
        0.1559240072965622,
        0.15912632644176483,
        0.14526472985744476,
        0.0942782312631607,
        0.09427948296070099,
        0.10747968405485153,
        0.11768140643835068,
        0.07415108382701874,
    ],
    "loss_saliency_rank": [
        3.5500054359436035,
        3.327254295349121,
        3.3162574768066406,
        3.3585174083709717,
        3.2699649333953857,
        3.1653928756713867,
        3.146522045135498,
        3.06592059135437,
        3.0476484298706055,
        2.7966291904449463,
    ],
    "loss_saliency_neg": [
        0.610539436340332,
        0.6031172275543213,
        0.5528717041015625,
        0.4990276098251343,
        0.43091773986816406,
        0.36447516083717346,
        0.3189988136291504,
        0.2517399489879608,
        0.20391961932182312,
        0.1626070886850357,
    ],
    "loss_esta_event": [
        2.921269178390503,
        3.1260828971862793,
        0.81975257396698,
        0.581798255443573,
        0.34897884726524353,
        0.20917119085788727,
        0.21173329651355743,
        0.05459729582071304,
        0.05149935185909271,
        0.08683478832244873,
    ],
    "loss_esta_clip": [
        2.9709208011627197,
        4.476004123687744,
        2.054603099822998,
        0.7862652540206909,
        1.3152822256088257,
        0.44290676712989807,
        0.4658578634262085,
        0.11529398709535599,
        0.0776023343205452,
        0.28204217553138733,
    ],
    "loss_sge": [
        4.303666591644287,
        2.57568097114563,
        1.6573597192764282,
        1.2811362743377686,
        1.023400068283081,
        0.343251496553421,
        0.43085670471191406,
        0.3261352777481079,
        0.2470405250787735,
        0.35568246245384216,
    ],
    "loss_lrca": [
        2.126260757446289,
        1.588263988494873,
        1.2372384071350098,
        0.9807075262069702,
        0.816860556602478,
        0.6114852428436279,
        0.5318334102630615,
        0.49257728457450867,
        0.4711095690727234,
        0.4122394621372223,
    ],
}
MASRA_METRICS: dict[str, float] = {
    "MR-full-R1@0.5": 25.0,
    "MR-full-R1@0.7": 12.5,
    "MR-full-mAP": 13.75,
    "MR-full-mAP@0.5": 25.0,
    "MR-full-mAP@0.75": 12.5,
    "MR-long-mAP": 0.0,
    "MR-middle-mAP": 0.0,
    "MR-short-mAP": 13.75,
    "HL-min-Fair-mAP": 89.24,
    "HL-min-Fair-Hit1": 100.0,
    "HL-min-Good-mAP": 77.78,
    "HL-min-Good-Hit1": 100.0,
    "HL-min-VeryGood-mAP": 53.47,
    "HL-min-VeryGood-Hit1": 87.5,
}

BASELINE_LOSSES: dict[str, list[float]] = {
    "loss": [
        21.12098503112793,
        24.263874053955078,
        20.235427856445312,
        19.920028686523438,
        18.286792755126953,
        17.39358901977539,
        16.98478889465332,
        16.92717170715332,
        16.348342895507812,
        17.464916229248047,
    ],
    "loss_span_l1": [
        0.5584097504615784,
        0.5507975220680237,
        0.4763455390930176,
        0.498856782913208,
        0.42641839385032654,
        0.38334745168685913,
        0.3684332072734833,
        0.3616686761379242,
        0.32805928587913513,
        0.39153820276260376,
    ],
    "loss_span_giou": [
        0.8999974131584167,
        0.8757133483886719,
        0.8646005988121033,
        0.8595423102378845,
        0.8713428378105164,
        0.8460028171539307,
        0.8865978717803955,
        0.9717546105384827,
        0.9549627304077148,
        1.1028387546539307,
    ],
    "loss_label": [
        0.45326170325279236,
        0.845759928226471,
        0.5539378523826599,
        0.5271580219268799,
        0.49381422996520996,
        0.49996379017829895,
        0.5221397876739502,
        0.5089663863182068,
        0.5071810483932495,
        0.512416660785675,
    ],
    "loss_span_l1_0": [
        0.5617579221725464,
        0.5532328486442566,
        0.4745970070362091,
        0.5023764967918396,
        0.43644678592681885,
        0.3951161503791809,
        0.3747449815273285,
        0.37146317958831787,
        0.3278835713863373,
        0.38824892044067383,
    ],
    "loss_span_giou_0": [
        0.905082106590271,
        0.8794030547142029,
        0.8536778688430786,
        0.863824188709259,
        0.8682680726051331,
        0.8462169170379639,
        0.8901692032814026,
        0.9708629250526428,
        0.9604613780975342,
        1.1032078266143799,
    ],
    "loss_label_0": [
        0.4779094159603119,
        0.9450885057449341,
        0.6751136183738708,
        0.5017274618148804,
        0.49102020263671875,
        0.5163370370864868,
        0.5005300045013428,
        0.5061966180801392,
        0.5168948173522949,
        0.5062206387519836,
    ],
    "loss_saliency_margin": [
        0.22139137983322144,
        0.22314634919166565,
        0.14356917142868042,
        0.14962583780288696,
        0.13043741881847382,
        0.114339679479599,
        0.08841591328382492,
        0.08091355860233307,
        0.13605758547782898,
        0.10084929317235947,
    ],
    "loss_saliency_rank": [
        3.5033602714538574,
        3.4770517349243164,
        3.3606014251708984,
        3.371098518371582,
        3.3407535552978516,
        3.2316060066223145,
        3.1183390617370605,
        3.026995897293091,
        3.189608335494995,
        2.8747739791870117,
    ],
    "loss_saliency_neg": [
        0.6647918820381165,
        0.6048630475997925,
        0.5873457789421082,
        0.5480647683143616,
        0.5080012679100037,
        0.505585253238678,
        0.47880637645721436,
        0.4846726357936859,
        0.45152029395103455,
        0.41082626581192017,
    ],
}
BASELINE_METRICS: dict[str, float] = {
    "MR-full-R1@0.5": 12.5,
    "MR-full-R1@0.7": 12.5,
    "MR-full-mAP": 8.75,
    "MR-full-mAP@0.5": 12.5,
    "MR-full-mAP@0.75": 12.5,
    "MR-long-mAP": 0.0,
    "MR-middle-mAP": 0.0,
    "MR-short-mAP": 8.75,
    "HL-min-Fair-mAP": 75.76,
    "HL-min-Fair-Hit1": 62.5,
    "HL-min-Good-mAP": 63.19,
    "HL-min-Good-Hit1": 50.0,
    "HL-min-VeryGood-mAP": 42.19,
    "HL-min-VeryGood-Hit1": 50.0,
}


def _golden_run(tmp_path: Path, **extra: object) -> tuple[list[dict[str, float]], dict[str, float]]:
    """Train 2 epochs; return the per-step loss lines and the last val metrics line."""
    card = make_world(tmp_path / "world", num_train=40, num_val=8)
    cfg = load_train_config(
        str(card),
        None,
        tiny_overrides(card, epochs=2, batch_size=8, log_every=1, seed=7, lr=3e-3, **extra),
        no_config=True,
    )
    run = tmp_path / "run"
    run_training(cfg, run)
    log = [json.loads(x) for x in (run / "train_log.jsonl").read_text().splitlines()]
    steps = [
        {k: v for k, v in r.items() if k == "loss" or k.startswith("loss_")}
        for r in log
        if not r.get("epoch_end")
    ]
    metrics = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert metrics["epoch"] == 2 and metrics["split"] == "val"
    brief = {k: v for k, v in metrics.items() if k not in ("epoch", "step", "split", "elapsed_s")}
    return steps, brief


@pytest.mark.parametrize(
    ("extra", "losses", "metrics"),
    [({}, MASRA_LOSSES, MASRA_METRICS), ({"masra": False}, BASELINE_LOSSES, BASELINE_METRICS)],
    ids=["masra", "baseline"],
)
def test_golden_training(
    tmp_path: Path, extra: dict[str, object], losses: dict[str, list[float]], metrics: dict[str, float]
) -> None:
    steps, brief = _golden_run(tmp_path, **extra)
    assert len(steps) == STEPS
    assert [set(s) for s in steps] == [set(losses)] * STEPS
    for name, expected in losses.items():
        got = [s[name] for s in steps]
        assert got == pytest.approx(expected, rel=RTOL, abs=1e-7), name
    assert brief == pytest.approx(metrics, rel=RTOL, abs=1e-7)
