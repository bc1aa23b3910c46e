"""The config schema: defaults, overrides, did-you-mean, safe YAML, and a saved config retraining the same model."""

import pytest
import torch

from palaestra.artifacts import read_tensors
from palaestra.config import Config, build_config, load_config, parse_override, read_saved_config, read_yaml
from palaestra.errors import ConfigError


def test_every_field_has_a_default_and_the_yaml_round_trips(tmp_path):
    cfg = load_config(None)
    assert cfg == build_config({}) == Config()
    assert cfg.data.source == "penguins" and cfg.model.family == "auto" and cfg.loss.name == "auto"
    path = tmp_path / "c.yaml"
    path.write_text(cfg.to_yaml())
    assert build_config(read_yaml(path)) == cfg
    assert load_config(path) == cfg
    assert load_config(cfg) == cfg


def test_overrides_are_yaml_values_on_dotted_keys():
    cfg = load_config({"data": {"source": "iris"}}, ["optimizer.lr=0.01", "model.hidden=[128, 64]",
                                                     "train.early_stopping=null", "loss=mse", "schedule.name=cosine"])
    assert cfg.optimizer.lr == 0.01 and cfg.model.hidden == [128, 64]
    assert cfg.train.early_stopping is None and cfg.loss.name == "mse" and cfg.schedule.name == "cosine"
    assert cfg.data.source == "iris"
    assert load_config(None, {"train.batch_size": 8}).train.batch_size == 8
    assert parse_override("data.source=my file.csv") == (["data", "source"], "my file.csv")


def test_loss_shorthand_then_a_nested_override():
    cfg = load_config({"loss": "huber"}, ["loss.huber_delta=2.0"])
    assert cfg.loss.name == "huber" and cfg.loss.huber_delta == 2.0


@pytest.mark.parametrize(("tree", "message"), [
    ({"optimzer": {"lr": 0.1}}, "unknown config key 'optimzer' (did you mean 'optimizer'?)"),
    ({"train": {"early_stoping": None}}, "did you mean 'train.early_stopping'?"),
    ({"train": {"early_stopping": {"patiense": 3}}}, "did you mean 'train.early_stopping.patience'?"),
    ({"model": {"init": {"form": "runs/x"}}}, "model.init"),
    ({"optimizer": {"lr": -1}}, "optimizer.lr: Input should be greater than 0"),
    ({"data": {"split": {"train": 0.5, "val": 0.1, "test": 0.1}}}, "must sum to 1"),
    ({"model": {"hidden": [64, 0]}}, "layer sizes must be positive"),
    ({"model": {"activation": "swish"}}, "model.activation"),
])
def test_invalid_configs_are_one_plain_config_error(tree, message):
    with pytest.raises(ConfigError) as err:
        build_config(tree)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_bad_override_syntax():
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        load_config(None, ["optimizer.lr"])
    with pytest.raises(ConfigError, match="needs a key"):
        load_config(None, ["=3"])


def test_yaml_never_executes_code(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.yaml"
    path.write_text(f"name: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        read_yaml(path)
    assert not marker.exists()


@pytest.mark.parametrize(("text", "message"), [("- a\n- b\n", "must hold a mapping"), ("a: [1,\n", "not valid YAML")])
def test_malformed_files(tmp_path, text, message):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_saved_config_alone_retrains_the_same_model(penguins_run):
    from palaestra.pipeline import train

    saved = load_config(penguins_run / "config.yaml")
    assert saved.model.family == "mlp" and saved.data.task == "classification"  # `auto` was resolved
    run = train(penguins_run / "config.yaml", quiet=True)
    weights = read_tensors(penguins_run / "model.safetensors")
    for name, tensor in run.model.state_dict().items():
        assert torch.equal(tensor, weights[name]), name
    assert isinstance(run.config, Config) and run.config == saved


def test_a_run_saved_before_the_quantile_encoding_is_read_with_z_scores(penguins_run, tmp_path):
    """A saved config.yaml holds every key of its version: one without data.numeric_encoding was trained on
    z-scores, and resuming or fine-tuning it must read its numbers so (a user's config gets today's default)."""
    import yaml

    tree = read_yaml(penguins_run / "config.yaml")
    assert tree["data"]["numeric_encoding"] == "quantile"  # saved with every default filled in
    assert read_saved_config(penguins_run / "config.yaml").data.numeric_encoding == "quantile"
    del tree["data"]["numeric_encoding"]
    old = tmp_path / "config.yaml"
    old.write_text(yaml.safe_dump(tree))
    assert read_saved_config(old).data.numeric_encoding == "standard"
    assert load_config(old).data.numeric_encoding == "quantile"
    # a forecast saved before model.blend was the network alone
    assert read_saved_config(penguins_run / "config.yaml").model.blend == "seasonal"
    del tree["model"]["blend"]
    old.write_text(yaml.safe_dump(tree))
    assert read_saved_config(old).model.blend == "none" and load_config(old).model.blend == "seasonal"
