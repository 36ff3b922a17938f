import pytest
import yaml

from affectkit.config import Config, load_config, parse_set_options
from affectkit.errors import AffectkitError


def test_spec_defaults():
    c = Config()
    assert (c.img_size, c.batch_size, c.epochs, c.fine_tune_epochs) == (224, 32, 30, 10)
    assert (c.validation_split, c.test_split, c.learning_rate, c.fine_tune_lr) == (0.15, 0.15, 1e-3, 1e-4)
    assert (c.loss.expression_weight, c.loss.valence_weight, c.loss.arousal_weight) == (1.0, 0.5, 0.5)
    a = c.augmentation
    assert (a.rotation_range, a.width_shift_range, a.zoom_range, a.shear_range, a.fill_mode) == (20, 0.2, 0.2, 0.1, "nearest")
    assert c.early_stopping_patience == 10 and c.lr_reduce_factor == 0.5


def test_yaml_with_notebook_spelling_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"IMG_SIZE": 96, "EPOCHS": 3, "MAX_SAMPLES": 1000, "loss": {"focal_gamma": 2}}))
    c = load_config(path)
    assert (c.img_size, c.epochs, c.max_samples, c.loss.focal_gamma) == (96, 3, 1000, 2)
    c2 = c.override(**parse_set_options(["augmentation.mixup_alpha=0.2", "batch_size=8"]), epochs=None)
    assert c2.augmentation.mixup_alpha == 0.2 and c2.batch_size == 8 and c2.epochs == 3
    written = c2.to_yaml(tmp_path / "out" / "config.yaml")
    assert load_config(written) == c2


def test_bad_config_is_a_clear_error(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("img_size: -3\nno_such_knob: 1\n")
    with pytest.raises(AffectkitError, match="img_size") as err:
        load_config(path)
    assert "no_such_knob" in str(err.value) and str(path) in str(err.value)
    with pytest.raises(AffectkitError, match="KEY=VALUE"):
        parse_set_options(["oops"])


def test_shipped_config_files_load_and_demo_yaml_is_the_demo_profile():
    from pathlib import Path

    from affectkit.data.synthetic import DEMO_PROFILE

    configs = Path(__file__).resolve().parents[1] / "configs"
    loaded = {path.stem: load_config(path) for path in configs.glob("*.yaml")}
    assert {"spec", "demo"} <= set(loaded)
    assert loaded["spec"] == Config()
    assert loaded["demo"] == Config(**DEMO_PROFILE)  # `affectkit demo` and `--config configs/demo.yaml` agree
    assert loaded["demo"].lr_schedule == "cosine"


def test_a_data_folder_settings_file_sits_between_defaults_and_the_config_file(tmp_path):
    from affectkit.config import DATA_CONFIG_NAME

    data = tmp_path / "data"
    data.mkdir()
    assert load_config(data=data) == Config()  # no file, the defaults
    (data / DATA_CONFIG_NAME).write_text("img_size: 64\nepochs: 60\naugmentation: {rotation_range: 5, zoom_range: 0.1}\n")
    from_data = load_config(data=data)
    assert (from_data.img_size, from_data.epochs, from_data.augmentation.rotation_range) == (64, 60, 5)
    assert from_data.augmentation.width_shift_range == 0.2  # keys the file leaves out keep their defaults
    user = tmp_path / "user.yaml"
    user.write_text("epochs: 3\naugmentation: {rotation_range: 0}\n")
    both = load_config(user, data=data)
    assert (both.img_size, both.epochs) == (64, 3)
    assert (both.augmentation.rotation_range, both.augmentation.zoom_range) == (0, 0.1)  # merged key by key
    (data / DATA_CONFIG_NAME).write_text("img_size: big\n")
    with pytest.raises(AffectkitError, match="img_size") as err:
        load_config(data=data)
    assert str(data / DATA_CONFIG_NAME) in str(err.value)


def test_demo_data_carries_the_demo_profile(tmp_path):
    from affectkit.data.synthetic import DEMO_PROFILE, make_demo_dataset

    root = make_demo_dataset(tmp_path / "demo", n=8, seed=0, progress=False)
    assert load_config(data=root) == Config(**DEMO_PROFILE)
