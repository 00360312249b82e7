"""The one tuning path: the tie rule, shared sweeps equal steering each cell alone, and `run` and
`reproduce` choosing the same cell from the same grid (ties included)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

import steerlens.experiments.main_job as main_job
from steerlens import Grid, collect_differences, encode_items, evaluate, steer, tune
from steerlens.experiments import ReproduceConfig, RunConfig, run_job, run_reproduction
from steerlens.methods import METHODS
from steerlens.sweep import choose, choose_cell
from steerlens.tasks import Task
from steerlens.tune import choose_on_dev, score_on_test
from tests.checking import OFF_TYPE
from tests.reference import make_examples

pytestmark = pytest.mark.filterwarnings("ignore:.*flip.* sign", "ignore:.*pairs have identical")


def tiny_task(name: str = "t", n_shot: int = 0, model=None) -> Task:
    seed = sum(map(ord, name)) + n_shot
    return Task(
        name,
        make_examples(16, seed=seed),
        make_examples(10, seed=seed + 1),
        make_examples(12, seed=seed + 2),
    )


def test_choose_breaks_ties_by_the_other_protocol_then_grid_order() -> None:
    primary = np.array([[0.0, 0.0], [0.0, 0.0]])
    secondary = np.array([[0.5, 0.7], [0.7, 0.1]])
    assert choose(primary, secondary) == (0, 1)
    assert choose(np.zeros((2, 2)), np.zeros((2, 2))) == (0, 0)
    assert choose(np.array([[0.1, 0.3], [0.3, 0.2]]), np.zeros((2, 2))) == (0, 1)
    acc, res = np.array([[0.2, 0.3]]), np.array([[0.9, 0.1]])
    grids = {"accuracy": acc, "restricted": res}
    assert choose_cell(grids, "accuracy") == (0, 1)
    assert choose_cell(grids, "restricted") == (0, 0)
    tied = {"accuracy": np.array([[0.2, 0.2]]), "restricted": res}
    assert choose_cell(tied, "accuracy") == (0, 0)  # tie -> restricted
    both = {"accuracy": np.zeros((1, 2)), "restricted": np.zeros((1, 2)), "paper": acc}
    assert choose_cell(both, "accuracy") == (0, 1)  # ties on two protocols -> paper
    assert choose_cell({**both, "paper": np.array([[np.nan, 0.0]])}, "accuracy") == (0, 1)
    with pytest.raises(OFF_TYPE, match="Unknown metric|parameter 'metric'"):
        choose_cell(grids, "f1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="No 'paper' scores"):
        choose_cell(grids, "paper")
    with pytest.raises(OFF_TYPE, match="one non-empty shape|parameter 'tie_breaks'"):
        choose(np.zeros((1, 2)), np.zeros((2, 1)))


def test_sweep_best_uses_the_same_rule(model, examples) -> None:
    from steerlens import sadi_mask, sweep

    diffs = collect_differences(model, examples, site="head", progress=False)
    result = sweep(model, examples, sadi_mask(diffs, 4), [0.5, 1.0, 2.0], ks=[1, 2], progress=False)
    i, j = choose_cell(result.grids, "accuracy")
    assert set(result.grids) == {"accuracy", "restricted", "paper"}
    assert result.best == (result.settings[i], result.strengths[j], result.accuracy[i, j])


def test_tune_equals_steering_each_cell_alone(model) -> None:
    task = tiny_task()
    diffs = collect_differences(model, task.train, site=["head", "mlp_out"], progress=False)
    dev, test = encode_items(model, task.dev), encode_items(model, task.test)
    arms = {
        "sadi": Grid(METHODS["sadi-head"].grid(diffs["head"], (1, 2)), (0.5, 4.0)),
        "au": Grid(METHODS["austeer-ffn"].grid(diffs["mlp_out"], (4, 16)), (2.0, 8.0)),
        "iti": Grid(METHODS["iti"].grid(diffs["head"], (1,)), (1.0,)),
    }
    result = tune(model, dev, test, arms, batch_size=4)
    for arm, grid in arms.items():
        settings = list(grid.masks)
        acc = np.zeros((len(settings), len(grid.strengths)))
        res, pap = np.zeros_like(acc), np.zeros_like(acc)
        for i, s in enumerate(settings):
            for j, a in enumerate(grid.strengths):
                with steer(model, grid.masks[s], a):
                    r = evaluate(model, dev, batch_size=3, progress=False)
                acc[i, j], res[i, j], pap[i, j] = r.accuracy, r.restricted, r.paper
        choice = result.arms[arm].choice
        plain = {"accuracy": acc, "restricted": res, "paper": pap}
        for metric, grid_ in plain.items():
            np.testing.assert_allclose(choice.grids[metric], grid_)
        i, j = choose_cell(plain, "accuracy")
        assert (choice.setting, choice.strength) == (settings[i], grid.strengths[j])
        with steer(model, choice.mask, choice.strength):
            plain = evaluate(model, test, batch_size=5, progress=False)
        assert bool((result.arms[arm].test.correct == plain.correct).all()), arm
    plain_base = evaluate(model, test, batch_size=4, progress=False)
    assert bool((result.test_baseline.correct == plain_base.correct).all())


def test_tune_in_workers_equals_one_process(model) -> None:
    task = tiny_task()
    diffs = collect_differences(
        model, task.train, site=["head", "mlp_out", "resid"], progress=False
    )
    dev, test = encode_items(model, task.dev), encode_items(model, task.test)
    arms = {
        "sadi": Grid(METHODS["sadi-head"].grid(diffs["head"], (1, 2)), (0.5, 4.0)),
        "au": Grid(METHODS["austeer-ffn"].grid(diffs["mlp_out"], (4, 16)), (2.0, 8.0)),
        "caa": Grid(METHODS["caa"].grid(diffs["resid"], (0, 1)), (1.0, 4.0)),
    }
    one = tune(model, dev, test, arms, batch_size=4)
    two = tune(model, dev, test, arms, batch_size=4, workers=2)  # the model travels pickled
    assert list(two.arms) == list(arms)
    for arm in arms:
        a, b = one.arms[arm], two.arms[arm]
        assert (a.choice.setting, a.choice.strength) == (b.choice.setting, b.choice.strength)
        for metric in a.choice.grids:
            np.testing.assert_array_equal(a.choice.grids[metric], b.choice.grids[metric])
        assert bool((a.test.correct == b.test.correct).all())
        torch.testing.assert_close(a.test.answer_logprob, b.test.answer_logprob, rtol=0, atol=1e-5)
    assert bool((one.test_baseline.correct == two.test_baseline.correct).all())
    with pytest.raises(ValueError, match="workers"):
        tune(model, dev, test, arms, workers=0)


def test_arm_cost_counts_tokens_from_the_first_steered_layer(model) -> None:
    from steerlens.tune import arm_cost

    task = tiny_task()
    diffs = collect_differences(model, task.train, site=["head", "mlp_out"], progress=False)
    dev = encode_items(model, task.dev)
    last = Grid(METHODS["sadi-head"].grid(diffs["head"], (1, 2)), (0.5, 4.0))
    every = Grid(METHODS["austeer-ffn"].grid(diffs["mlp_out"], (4, 16)), (2.0, 8.0))
    assert arm_cost(last, dev, model.cfg.n_layers) == 4.0  # 4 cells, one token each
    assert arm_cost(every, dev, model.cfg.n_layers) > 4.0


def test_on_choice_sees_every_arm_and_empty_arms_still_score_the_baseline(model) -> None:
    task = tiny_task()
    diffs = collect_differences(model, task.train, site="head", progress=False)
    dev, test = encode_items(model, task.dev), encode_items(model, task.test)
    seen = []
    base, choices = choose_on_dev(
        model,
        dev,
        {"a": Grid(METHODS["sadi-head"].grid(diffs, (1,)), (1.0,))},
        on_choice=lambda arm, choice, baseline: seen.append((arm, baseline.n)),
    )
    assert seen == [("a", len(task.dev))] and list(choices) == ["a"]
    base_test, scored = score_on_test(model, test, {})
    assert scored == {} and base_test.n == len(task.test)
    with pytest.raises(ValueError, match="at least one strength"):
        Grid(METHODS["sadi-head"].grid(diffs, (1,)), ())


@pytest.fixture
def flat_model(model):
    """The tiny model with its unembedding zeroed: every cell of every grid ties (all logits
    equal), so choosing depends on the tie rule alone."""
    model.W_U.data.zero_()
    model.b_U.data.zero_()
    return model


def test_run_and_reproduce_choose_the_same_cell_ties_included(tmp_path, monkeypatch, model) -> None:
    task = tiny_task("same")
    monkeypatch.setattr(main_job, "load_raw_task", lambda config: task)
    monkeypatch.setattr(main_job, "format_task", lambda raw, style, **kw: raw)
    methods = ("sadi-head", "austeer-ffn", "caa", "iti")
    for m in (model,):
        run = run_job(
            RunConfig(methods=methods, batch_size=4, out=str(tmp_path / "run")),
            model=m,
            progress=False,
        )
        grids = {name: METHODS[name].grid_spec("run", m.cfg.n_layers) for name in methods}
        rep = run_reproduction(
            ReproduceConfig(
                tasks=("same",),
                shots=(0,),
                n_train=None,
                n_dev=None,
                n_test=None,
                methods=("none", *methods),
                grids=grids,
                batch_size=4,
                n_boot=50,
                out=str(tmp_path / "rep"),
            ),
            model=m,
            task_loader=lambda name, n_shot, model: task,
            progress=False,
        )
        by_run = {r.method: (r.setting, r.strength, r.test.correct) for r in run.records}
        by_rep = {r.method: (r.setting, r.strength, r.test.correct) for r in rep.records}
        assert by_run == by_rep


def test_ties_go_to_the_first_cell_when_every_cell_ties(tmp_path, monkeypatch, flat_model) -> None:
    task = tiny_task("flat")
    monkeypatch.setattr(main_job, "load_raw_task", lambda config: task)
    monkeypatch.setattr(main_job, "format_task", lambda raw, style, **kw: raw)
    run = run_job(
        RunConfig(methods=("sadi-head", "caa"), batch_size=4, out=str(tmp_path / "r")),
        model=flat_model,
        progress=False,
    )
    for record in run.records[1:]:
        settings, strengths = METHODS[record.method].grid_spec("run", flat_model.cfg.n_layers)
        assert len({c["accuracy"] for c in record.grid}) == 1  # a grid of ties
        assert (record.setting, record.strength) == (settings[0], strengths[0])


def test_run_config_rejects_bad_input_early() -> None:
    with pytest.raises(ValueError, match="Unknown method 'nope'"):
        RunConfig(methods=("nope",))
    with pytest.raises(ValueError, match="n_dev must be positive"):
        RunConfig(n_dev=0)
    with pytest.raises(OFF_TYPE, match="Unknown metric|parameter 'metric'"):
        RunConfig(metric="f1")  # type: ignore[arg-type]
    assert dataclasses.replace(RunConfig(), n_test=None).n_test is None
