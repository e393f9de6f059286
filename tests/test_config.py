from pathlib import Path

import pytest

from flowerlib.config import Config, ConfigError


def test_defaults_are_the_real_job():
    cfg = Config()
    assert (cfg.profile, cfg.backbone, cfg.weights, cfg.image_size, cfg.num_classes) == (
        "full",
        "resnet50",
        "imagenet",
        224,
        102,
    )
    assert cfg.fine_tune_learning_rate < cfg.head_learning_rate
    assert not cfg.synthetic


def test_data_dir_defaults_to_a_per_user_cache_not_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = Config()
    assert cfg.data_dir.is_absolute()
    assert tmp_path not in cfg.data_dir.parents
    assert Config.for_profile("smoke").data_dir != cfg.data_dir  # synthetic never overwrites real data


def test_smoke_profile_is_small_and_offline():
    cfg = Config.for_profile("smoke")
    assert cfg.synthetic and cfg.num_classes == 10 and cfg.image_size <= 64


def test_smoke_profile_uses_the_packaged_pretrained_tiny_weights():
    from importlib.resources import files

    cfg = Config.for_profile("smoke")
    packaged = Path(str(files("flowerlib") / "data" / "tiny_backbone.weights.h5"))
    assert cfg.backbone == "tiny" and Path(cfg.weights) == packaged and packaged.is_file()
    assert cfg.image_size == 64  # the size the weights were pretrained at


def test_smoke_profile_fine_tunes_by_the_same_rules_as_the_full_one():
    smoke, full = Config.for_profile("smoke"), Config.for_profile("full")
    assert smoke.fine_tune_stages == full.fine_tune_stages == 1
    assert smoke.head_learning_rate == full.head_learning_rate
    assert smoke.fine_tune_learning_rate == full.fine_tune_learning_rate
    assert smoke.fine_tune_learning_rate * 10 == pytest.approx(smoke.head_learning_rate)


def test_from_env_reads_flowers_variables_and_overrides_win(tmp_path):
    env = {
        "FLOWERS_PROFILE": "smoke",
        "FLOWERS_DATA_DIR": str(tmp_path),
        "FLOWERS_IMAGE_SIZE": "96",
        "FLOWERS_AUGMENT": "no",
        "FLOWERS_WEIGHTS": "none",
        "FLOWERS_SPLIT_FRACTIONS": "0.6,0.2,0.2",
        "UNRELATED": "x",
    }
    cfg = Config.from_env(env, batch_size=8, image_size=80)
    assert cfg.profile == "smoke" and cfg.data_dir == Path(tmp_path)
    assert cfg.image_size == 80  # explicit override beats the environment
    assert cfg.batch_size == 8 and cfg.augment is False and cfg.weights is None
    assert cfg.split_fractions == (0.6, 0.2, 0.2)


def test_weights_path_from_env_is_kept_as_a_string(tmp_path):
    cfg = Config.from_env({"FLOWERS_WEIGHTS": str(tmp_path / "w.h5")})
    assert cfg.weights == str(tmp_path / "w.h5")


@pytest.mark.parametrize(
    "env, fragment",
    [
        ({"FLOWERS_IMAGE_SIZE": "big"}, "FLOWERS_IMAGE_SIZE='big'"),
        ({"FLOWERS_AUGMENT": "maybe"}, "FLOWERS_AUGMENT='maybe'"),
        ({"FLOWERS_PROFILE": "huge"}, "profile='huge'"),
        ({"FLOWERS_SPLIT": "kfold"}, "split='kfold'"),
        ({"FLOWERS_IMAGE_SIZE": "16"}, "image_size=16"),
        ({"FLOWERS_LABEL_SMOOTHING": "1.0"}, "label_smoothing=1.0"),
        ({"FLOWERS_LABEL_SMOOTHING": "-0.1"}, "label_smoothing=-0.1"),
        ({"FLOWERS_BACKBONE": "resnet"}, "'resnet' names no backbone: use one of .*'resnet50'"),
        ({"FLOWERS_BATCH_SIZE": "abc"}, "'abc' is not valid for batch_size: write a whole number"),
        ({"FLOWERS_DROPOUT": "half"}, "'half' is not valid for dropout: write a number"),
    ],
)
def test_bad_values_raise_a_clear_error_that_echoes_them_and_names_the_variable(env, fragment):
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(").replace("?", r"\?")) as info:
        Config.from_env(env)
    assert f"Environment variable {next(iter(env))}" in str(info.value)


def test_a_bad_value_given_as_an_argument_is_not_blamed_on_the_environment():
    with pytest.raises(ConfigError, match="patience") as info:
        Config.from_env({"FLOWERS_SEED": "3"}, patience=-1)
    assert "Environment variable" not in str(info.value)


def test_config_is_frozen_and_replace_returns_a_copy():
    cfg = Config()
    with pytest.raises(AttributeError):
        cfg.seed = 1  # type: ignore[misc]
    other = cfg.replace(seed=1)
    assert other.seed == 1 and cfg.seed == 42


def test_json_round_trip(tmp_path):
    cfg = Config.for_profile("smoke", data_dir=tmp_path, weights=str(tmp_path / "w.h5"))
    back = Config.from_dict(__import__("json").loads(cfg.to_json()))
    assert back == cfg


def test_from_dict_rejects_unknown_keys():
    with pytest.raises(ConfigError, match="colour"):
        Config.from_dict({"colour": "red"})


def test_a_misspelt_flowers_variable_is_reported_not_silently_ignored():
    from flowerlib.config import ConfigWarning

    with pytest.warns(ConfigWarning, match="FLOWERS_IMAGE_SIZ"):
        cfg = Config.from_env({"FLOWERS_IMAGE_SIZ": "100", "FLOWERS_DEBUG": "1"})
    assert cfg.image_size == 224


def test_a_relative_path_in_the_environment_is_warned_about(tmp_path, recwarn):
    from flowerlib.config import ConfigWarning

    with pytest.warns(ConfigWarning, match="FLOWERS_DATA_DIR=reldata is a relative path.*absolute"):
        Config.from_env({"FLOWERS_DATA_DIR": "reldata"})
    recwarn.clear()
    Config.from_env({"FLOWERS_DATA_DIR": str(tmp_path), "FLOWERS_WEIGHTS": "imagenet"})
    assert not [w for w in recwarn if "relative" in str(w.message)]


def test_known_variables_raise_no_warning(recwarn):
    Config.from_env({"FLOWERS_PROFILE": "smoke", "FLOWERS_DEBUG": "1", "FLOWERS_SEED": "3"})
    assert not [w for w in recwarn if "unknown environment" in str(w.message)]


def test_the_full_profile_trains_on_trainval_and_the_smoke_profile_on_the_official_split():
    assert Config.for_profile("full").split == "trainval"
    assert Config.for_profile("smoke").split == "official"
    assert Config.from_env({"FLOWERS_SPLIT": "official"}, profile="full").split == "official"
