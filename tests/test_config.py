import pytest
import yaml

from affectkit.config import Config, load_config, parse_set_options
from affectkit.data.archives import data_config
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


def test_a_misspelt_key_is_answered_with_the_setting_meant():
    with pytest.raises(AffectkitError, match=r"epoch: not a setting \(did you mean epochs\? `affectkit config`"):
        Config().with_values({"epoch": 3})
    with pytest.raises(AffectkitError, match=r"loss.label_smothing: not a setting \(did you mean loss.label_smoothing"):
        Config().with_values({"loss.label_smothing": 0.1})
    with pytest.raises(AffectkitError, match=r"zzz: not a setting \(`affectkit config` lists every key\)"):
        Config().with_values({"zzz": 1})


def test_model_settings_change_one_model_and_are_checked_like_the_config(tmp_path):
    config = Config(fine_tune_lr=1e-4).with_values(parse_set_options(
        ["model_settings.mini_xception.backbone_lr_scale=1", "model_settings.resnet50.augmentation.mixup_alpha=0.3"]))
    mini, mobile, other = (config.for_model(key) for key in ("mini_xception", "resnet50", "custom_cnn"))
    assert (mini.backbone_lr_scale, mini.augmentation.mixup_alpha, mini.fine_tune_lr) == (1.0, 0.0, 1e-4)
    assert (mobile.backbone_lr_scale, mobile.augmentation.mixup_alpha) == (config.backbone_lr_scale, 0.3)
    assert other == config and mini.model_settings == config.model_settings  # a saved model says where it came from
    assert mini.for_model("mini_xception") == mini
    assert load_config(config.to_yaml(tmp_path / "config.yaml")) == config
    for change, problem in (("img_size=64", "img_size is shared by every model"),
                            ("backbone_lr_scale=3", "backbone_lr_scale: Input should be less than or equal to 1"),
                            ("no_such_knob=1", "no_such_knob: not a setting")):
        with pytest.raises(AffectkitError, match=problem) as err:
            Config().with_values(parse_set_options([f"model_settings.mini_xception.{change}"]))
        assert "model_settings.mini_xception" in str(err.value)


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
    assert load_config(data=data_config(data)) == Config()  # no file, the defaults
    (data / DATA_CONFIG_NAME).write_text("img_size: 64\nepochs: 60\naugmentation: {rotation_range: 5, zoom_range: 0.1}\n")
    from_data = load_config(data=data_config(data))
    assert (from_data.img_size, from_data.epochs, from_data.augmentation.rotation_range) == (64, 60, 5)
    assert from_data.augmentation.width_shift_range == 0.2  # keys the file leaves out keep their defaults
    user = tmp_path / "user.yaml"
    user.write_text("epochs: 3\naugmentation: {rotation_range: 0}\n")
    both = load_config(user, data=data_config(data))
    assert (both.img_size, both.epochs) == (64, 3)
    assert (both.augmentation.rotation_range, both.augmentation.zoom_range) == (0, 0.1)  # merged key by key
    (data / DATA_CONFIG_NAME).write_text("img_size: big\n")
    with pytest.raises(AffectkitError, match="img_size") as err:
        load_config(data=data_config(data))
    assert str(data / DATA_CONFIG_NAME) in str(err.value)


def test_demo_data_carries_the_demo_profile(tmp_path):
    from affectkit.data.synthetic import DEMO_PROFILE, make_demo_dataset

    root = make_demo_dataset(tmp_path / "demo", n=8, seed=0, progress=False)
    assert load_config(data=data_config(root)) == Config(**DEMO_PROFILE)


def test_set_values_take_the_declared_type_of_their_key():
    from affectkit.config import coerce_value

    sets = parse_set_options(["precision=32", "loss.focal_gamma=2", "augmentation.mixup_alpha=0.2", "IMG_SIZE=64",
                              "class_map.scream=fear", "class_map.yes=no", "max_samples=null", "num_workers=2",
                              "devices=auto", r"group_pattern=^[A-Z", "augmentation.rand_augment=rand-m9-mstd0.5"])
    c = Config(max_samples=100).with_values(sets)
    assert c.precision == "32" and c.loss.focal_gamma == 2 and c.augmentation.mixup_alpha == 0.2 and c.img_size == 64
    assert c.class_map == {"scream": "fear", "yes": "no"}  # YAML would read "no" as false
    assert c.max_samples is None and c.num_workers == 2 and c.devices == "auto" and c.group_pattern == "^[A-Z"
    assert coerce_value("use_light_models", "yes") is True and coerce_value("no_such_key", "32") == 32
    with pytest.raises(AffectkitError, match="precision"):
        Config().with_values(parse_set_options(["precision=64"]))
    with pytest.raises(AffectkitError, match="no_such_key"):
        Config().with_values(parse_set_options(["no_such_key=1"]))


def test_every_key_is_listed_with_a_default_and_a_one_line_description():
    from typer.testing import CliRunner

    from affectkit.cli import app
    from affectkit.config import config_reference

    def leaves(data: dict, prefix: str = "") -> dict:
        out = {}
        for key, value in data.items():
            nested = isinstance(value, dict) and key not in ("class_map", "model_settings")
            out.update(leaves(value, f"{prefix}{key}.") if nested else {prefix + key: value})
        return out

    reference = {row["key"]: row for row in config_reference()}
    assert reference.keys() == leaves(Config().model_dump()).keys()
    for key, value in leaves(Config().model_dump()).items():
        assert reference[key]["default"] == value
        description = reference[key]["description"]
        assert description and "\n" not in description and len(description) < 120, key
    assert reference["precision"]["type"] == "auto|32|bf16-mixed|16-mixed"
    listing = CliRunner().invoke(app, ["config"])
    assert listing.exit_code == 0
    for key in ("loss.focal_gamma", "augmentation.mixup_alpha", "class_map", "tensorboard"):
        assert key in listing.stdout


@pytest.mark.parametrize("command", [["train", "--model", "custom_cnn", "--data"], ["run"], ["tune"]])
def test_print_config_prints_yaml_that_config_reads_back_unchanged(command, tmp_path):
    from typer.testing import CliRunner

    from affectkit.cli import app, build_config
    from affectkit.config import DATA_CONFIG_NAME

    data = tmp_path / "data"
    data.mkdir()
    (data / DATA_CONFIG_NAME).write_text("img_size: 64\naugmentation: {rotation_range: 5}\n")
    sets = ["--set", "precision=32", "--set", "class_map.scream=fear", "--set", "loss.focal_gamma=2"]
    out = tmp_path / "out"
    printed = CliRunner().invoke(app, [*command, str(data), "--out", str(out), "--epochs", "3", *sets,
                                       "--print-config"])
    assert printed.exit_code == 0, printed.output
    saved = tmp_path / "printed.yaml"
    saved.write_text(printed.stdout)
    expected = build_config(None, sets[1::2], data, epochs=3)
    assert load_config(saved) == expected and load_config(saved, data=data_config(data)) == expected
    assert expected.precision == "32" and expected.img_size == 64 and expected.augmentation.rotation_range == 5
    assert not out.exists()  # nothing trained


def test_each_packaged_profile_is_the_one_in_configs():
    from pathlib import Path

    from affectkit.config import PROFILES_DIR, profile_names

    configs = Path(__file__).resolve().parents[1] / "configs"
    assert profile_names() == sorted(path.stem for path in configs.glob("*.yaml"))
    assert {"recommended", "demo", "spec"} <= set(profile_names())
    for name in profile_names():
        assert (PROFILES_DIR / f"{name}.yaml").read_text() == (configs / f"{name}.yaml").read_text(), (
            f"configs/{name}.yaml changed: copy it to src/affectkit/configs/ (the installed copy)")


def test_a_profile_sits_between_the_data_folders_settings_and_the_config_file(tmp_path):
    from typer.testing import CliRunner

    from affectkit.cli import app, build_config
    from affectkit.config import DATA_CONFIG_NAME, profile_path

    data = tmp_path / "data"
    data.mkdir()
    (data / DATA_CONFIG_NAME).write_text("img_size: 64\nepochs: 60\n")
    user = tmp_path / "user.yaml"
    user.write_text("epochs: 3\n")
    recommended = load_config(profile_path("recommended"))
    config = build_config(user, None, data, "recommended")
    assert config.epochs == 3 and config.img_size == recommended.img_size != 64  # the file, then the profile
    assert config == load_config(user, data=data_config(data), profile="recommended")
    printed = CliRunner().invoke(app, ["run", str(data), "--profile", "demo", "--print-config"])
    assert printed.exit_code == 0, printed.output
    assert yaml.safe_load(printed.stdout)["lr_schedule"] == load_config(profile="demo").lr_schedule
    with pytest.raises(AffectkitError, match="Unknown profile 'fast'; the profiles are .*recommended"):
        load_config(profile="fast")


def test_training_options_are_the_config_keys_with_their_declared_types_and_help():
    from typer.testing import CliRunner

    from affectkit.cli import app, build_config
    from affectkit.cli.common import TRAINING_OPTIONS
    from affectkit.config import config_reference

    reference = {row["key"]: row for row in config_reference()}
    assert all(option.key in reference for option in TRAINING_OPTIONS)
    args = ["--workers", "auto", "--devices", "2", "--lr", "0.01", "--no-light", "--max-samples", "100"]
    printed = CliRunner().invoke(app, ["train", "--model", "custom_cnn", "--data", "nowhere", *args, "--print-config"])
    assert printed.exit_code == 0, printed.output
    expected = build_config(None, None, num_workers="auto", devices=2, learning_rate=0.01, use_light_models=False,
                            max_samples=100)
    assert Config.model_validate(yaml.safe_load(printed.stdout)) == expected
    help_text = " ".join(CliRunner().invoke(app, ["run", "--help"], env={"COLUMNS": "200"}).stdout.split())
    assert reference["fine_tune_lr"]["description"] in help_text


def test_the_command_list_gives_each_summary_on_one_line_where_the_terminal_is_wide_enough():
    from typer.testing import CliRunner

    from affectkit.cli import app

    lines = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "400"}).stdout.splitlines()
    assert any("compared by CCC; the one best on validation kept for each dimension." in line
               and "temporal-frames " in line for line in lines)
