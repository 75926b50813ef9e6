"""The diffusion pipeline on a tiny random VLM: AR checkpoint -> RAD -> DCD -> ``echocxr bench``.

Proves the code path end to end (checkpoints, resumable runs, trajectories on disk, the CLI and
its JSON); the quality numbers of a few-step run on random weights mean nothing and are not checked.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from model.blocks import DiffusionError
from model.checkpoint import load_checkpoint, save_checkpoint
from model.data.datasets import phantom_records
from model.diffusion import RADConfig, train_rad
from model.distill import DCDConfig, distill
from model.report_ngrams import ReportNgrams
from model.tokenizer import Tokenizer
from model.vlm import VLM
from service.cli import app
from tests.model.conftest import tiny_model_config

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def ar_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tokenizer = Tokenizer.train(
        ["FINDINGS: The lungs are clear.\nIMPRESSION: No acute disease."] * 8, vocab_size=300
    )
    torch.manual_seed(0)
    vlm = VLM(tiny_model_config(), tokenizer)
    return save_checkpoint(
        tmp_path_factory.mktemp("ar") / "checkpoint",
        vlm,
        tokenizer,
        model_id="tiny-ar",
        data_sha256="0" * 64,
    )


def test_rad_then_dcd_then_bench(ar_checkpoint: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    rad = RADConfig(
        init_checkpoint=str(ar_checkpoint),
        block_size=4,
        steps=3,
        lr=3e-4,
        batch_size=4,
        train_studies=8,
        eval_every=2,
        length_buckets=2,
    )
    assert train_rad(rad, tmp_path / "rad", cache, stop_after=2) is None  # killed after a snapshot
    state = torch.load(tmp_path / "rad" / "rad_state.pt", weights_only=False)
    assert state["step"] == 2
    rad_dir = train_rad(rad, tmp_path / "rad", cache)  # resumes at step 2
    assert rad_dir is not None
    teacher = load_checkpoint(rad_dir)
    assert (teacher.vlm.config.stage, teacher.vlm.config.block_size) == ("rad", 4)
    assert [
        h["step"] for h in json.loads((rad_dir / "metrics.json").read_text())["rad_history"]
    ] == [2, 3]
    # a RAD checkpoint trains further with a fresh schedule, at its own block size unless the
    # recipe names the block size it starts from
    more = replace(rad, init_checkpoint=str(rad_dir), steps=1)
    continued = load_checkpoint(train_rad(more, tmp_path / "rad-more", cache))
    assert continued.vlm.config.block_size == 4
    assert continued.weights_sha256 != teacher.weights_sha256
    with pytest.raises(
        DiffusionError, match="block size 4; the recipe continues from block size 8"
    ):
        train_rad(replace(more, block_size=8), tmp_path / "rad-b8", cache)
    with pytest.raises(
        DiffusionError, match="block size 4; the recipe continues from block size 2"
    ):
        train_rad(replace(more, block_size=8, init_block_size=2), tmp_path / "rad-b8", cache)
    resized = load_checkpoint(
        train_rad(replace(more, block_size=8, init_block_size=4), tmp_path / "rad-b8", cache)
    )
    assert (resized.vlm.config.stage, resized.vlm.config.block_size) == ("rad", 8)

    dcd = DCDConfig(
        teacher_checkpoint=str(rad_dir),
        studies=6,
        teacher_steps=2,
        batch_size=3,
        epochs=1,
        train_studies=8,
        top_k=8,
        student_prefix_studies=4,
        student_prefix_epochs=2,
        length_buckets=1,  # shards in study order
    )
    # killed after the round's first epoch: its shards are on disk, the student moved on since
    assert distill(dcd, tmp_path / "dcd", cache, stop_after=2) is None
    round_shards = sorted((tmp_path / "dcd" / "student-prefix").glob("shard-*.pt"))
    # studies 6, 7 then wrap to 0, 1: the round follows phase 1's studies
    assert round_studies(round_shards) == [[6, 7, 0], [1]]
    round_written = {shard: shard.stat().st_mtime_ns for shard in round_shards}
    dcd_dir = distill(dcd, tmp_path / "dcd", cache)  # resumes at the round's second epoch
    assert dcd_dir is not None
    assert {shard: shard.stat().st_mtime_ns for shard in round_shards} == round_written
    settings = json.loads((tmp_path / "dcd" / "student-prefix" / "rollout.json").read_text())
    # the student wrote under its training reports' n-grams, and the shards say so
    assert settings["student_prefix_ngrams"]
    shards = sorted((tmp_path / "dcd" / "trajectories").glob("shard-*.pt"))
    assert len(shards) == 2
    resumed = load_checkpoint(dcd_dir)
    assert resumed.vlm.config.stage == "dcd"
    # both stages keep the n-grams of the reports they trained on, for one-step decoding
    texts = [record.report_text for record in phantom_records(0, 8, "train")]
    trained_on = ReportNgrams.of_texts(texts, resumed.tokenizer).keys
    for checkpoint in (teacher, resumed):
        assert checkpoint.vlm.report_ngrams is not None
        assert torch.equal(checkpoint.vlm.report_ngrams.keys, trained_on)
    straight = distill(dcd, tmp_path / "straight", cache)  # the same run, never killed
    assert straight is not None
    assert load_checkpoint(straight).weights_sha256 == resumed.weights_sha256
    history = json.loads((dcd_dir / "metrics.json").read_text())["dcd_history"]
    assert [(h["epoch"], h["prefix"]) for h in history] == [
        (1, "teacher prefix"),
        (2, "student prefix"),
        (3, "student prefix"),
    ]

    # The factorized baseline trains on the DCD run's rollouts: phase 1 does not run again.
    written = {shard: shard.stat().st_mtime_ns for shard in shards}
    factorized = replace(
        dcd,
        target="factorized",
        trajectories=str(tmp_path / "dcd" / "trajectories"),
        student_prefix_studies=0,
    )
    assert load_checkpoint(distill(factorized, tmp_path / "fact", cache)).vlm.config.stage == "dcd"
    assert {shard: shard.stat().st_mtime_ns for shard in shards} == written
    assert not (tmp_path / "fact" / "trajectories").exists()
    with pytest.raises(DiffusionError, match="threshold"):
        distill(replace(factorized, threshold=0.5), tmp_path / "other", cache)

    out = tmp_path / "bench.json"
    result = CliRunner().invoke(
        app,
        [
            "bench",
            "--engines",
            "ar,diffusion-onestep,diffusion-onestep@argmax,diffusion-multistep@rad,"
            "diffusion-multistep@s1",
            "--block-size",
            "4",
            "--n",
            "3",
            "--checkpoint",
            f"ar={ar_checkpoint}",
            "--checkpoint",
            f"diffusion-onestep={dcd_dir}",
            "--checkpoint",
            f"diffusion-onestep@argmax={dcd_dir}",
            "--checkpoint",
            f"diffusion-multistep@rad={rad_dir}",
            "--checkpoint",
            f"diffusion-multistep@s1={dcd_dir}",
            "--engine-option",
            "diffusion-multistep@s1:steps=1",
            "--engine-option",
            "diffusion-onestep@argmax:report_ngrams=false",
            "--json",
            str(out),
            "--cache-dir",
            str(cache),
        ],
    )
    assert result.exit_code == 0, result.output
    rows = {row["row"]: row for row in json.loads(out.read_text())["engines"]}
    assert set(rows) == {
        "ar",
        "diffusion-onestep",
        "diffusion-onestep@argmax",
        "diffusion-multistep@rad",
        "diffusion-multistep@s1",
    }
    for row in rows.values():
        for key in (
            "ms_per_report",
            "forwards_per_report",
            "macro_f1_14",
            "micro_f1_5",
            "bleu4",
            "rouge_l",
            "repeat_rate",
            "speedup_vs_ar",
        ):
            assert isinstance(row[key], float), key
        assert len(row["per_observation_f1"]) == 14
        assert set(row["per_observation_errors"]["Pneumothorax"]) == {"fp", "fn"}
    assert rows["ar"]["speedup_vs_ar"] == 1.0
    assert "macro_f1_14_vs_ar" not in rows["ar"]
    for name in ("diffusion-onestep", "diffusion-multistep@rad"):
        gap = rows[name]["macro_f1_14_vs_ar"]
        assert gap["delta"] == pytest.approx(rows[name]["macro_f1_14"] - rows["ar"]["macro_f1_14"])
        assert gap["low"] <= gap["delta"] <= gap["high"]
    assert rows["diffusion-onestep"]["tokens_per_forward"] <= 4.0
    # the multi-step sampler told to take one step per block is the one-step engine's argmax
    one_step, s1 = rows["diffusion-onestep@argmax"], rows["diffusion-multistep@s1"]
    assert s1["engine_options"] == {"steps": 1}
    assert one_step["engine_options"] == {"report_ngrams": False}
    assert s1["forwards_per_report"] == one_step["forwards_per_report"]
    assert s1["tokens_per_report"] == one_step["tokens_per_report"]


def round_studies(shards: list[Path]) -> list[list[int]]:
    return [torch.load(p, weights_only=True)["studies"].tolist() for p in shards]


def test_bench_rejects_checkpoint_for_unlisted_row(ar_checkpoint: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "bench",
            "--engines",
            "ar",
            "--checkpoint",
            f"dcd={ar_checkpoint}",
            "--json",
            str(tmp_path / "x.json"),
        ],
    )
    assert result.exit_code == 2
    assert "not benchmarked" in result.output


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("ar:temperature", "ROW:KEY=VALUE"),
        ("steps=2", "ROW:KEY=VALUE"),
        ("diffusion-onestep:steps=2", "not benchmarked"),
        ("ar:steps=2", "engine 'ar' has no option 'steps'; its options are temperature"),
        ("ar:top_p=2", "top_p"),
    ],
)
def test_bench_rejects_a_bad_engine_option_before_decoding(
    ar_checkpoint: Path, tmp_path: Path, option: str, message: str
) -> None:
    out = tmp_path / "x.json"
    result = CliRunner().invoke(
        app,
        [
            *("bench", "--engines", "ar", "--checkpoint", f"ar={ar_checkpoint}"),
            *("--engine-option", option, "--json", str(out), "--cache-dir", str(tmp_path)),
        ],
    )
    assert result.exit_code == 2
    assert message in result.output
    assert not out.exists()
    assert not any(tmp_path.iterdir())  # failed before rendering a study


def test_distill_refuses_an_ar_teacher(ar_checkpoint: Path, tmp_path: Path) -> None:
    config = tmp_path / "dcd.json"
    config.write_text(json.dumps({"teacher_checkpoint": str(ar_checkpoint)}))
    result = CliRunner().invoke(
        app, ["distill", "--config", str(config), "--out", str(tmp_path / "run")]
    )
    assert result.exit_code == 2
    assert "AR checkpoint" in result.output


@pytest.mark.parametrize(
    ("recipe", "problem"),
    [
        ({"blocks": 8}, "unknown key ['blocks']"),
        ({"init_checkpoint": "x", "block_size": 8, "steps": 1}, "missing key ['lr']"),
        # an option removed with its experiment (docs/decisions) is named as unknown, not crashed on
        ({"init_checkpoint": "x", "block_size": 8, "steps": 1, "lr": 1e-4, "precision": "bf16"},
         "unknown key ['precision']"),
    ],
)  # fmt: skip
def test_train_rad_names_an_unknown_or_missing_recipe_key(
    tmp_path: Path, recipe: dict[str, object], problem: str
) -> None:
    config = tmp_path / "rad.json"
    config.write_text(json.dumps(recipe))
    result = CliRunner().invoke(
        app, ["train-rad", "--config", str(config), "--out", str(tmp_path / "run")]
    )
    assert result.exit_code == 2
    expected = f"invalid RAD config {config}: {problem}; a RAD recipe takes init_checkpoint"
    assert expected in result.output
    assert "Traceback" not in result.output
