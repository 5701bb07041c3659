"""`make demo` at a smoke budget: every stage runs and leaves a model folder ready to publish."""

import json



def test_demo_smoke_runs_end_to_end(tmp_path):
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("demo", Path(__file__).parent.parent / "examples" / "demo.py")
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    result = demo.main(["--smoke", "--output-dir", str(tmp_path)])
    model_dir = Path(result["model_dir"])
    for name in ("model.safetensors", "config.json", "generation_config.json", "tokenizer.json",
                 "training_curves.png", "trainer_state.json"):
        assert (model_dir / name).is_file(), name
    metrics = result["metrics"]
    for direction in ("en-fr", "fr-en", "en-de", "de-en"):
        assert f"test_bleu_{direction}" in metrics and f"test_chrf_{direction}" in metrics
        assert f"bleu_{direction}" in result["baseline"]
    table = (tmp_path / "results.md").read_text()
    assert table.count("\n") == 2 + 4
    assert json.loads((model_dir / "config.json").read_text())["custom_pipelines"]["translation"]

    # The folder the demo leaves is ready for `xlm-hf push`, which the demo suggests: its dry run stages and verifies it.
    from xlm_hf.cli import main as cli

    assert cli(["push", str(model_dir), "--repo-id", "you/xlm-demo", "--dry-run"]) == 0
    assert (model_dir.parent / f"{model_dir.name}-hub" / "README.md").is_file()
