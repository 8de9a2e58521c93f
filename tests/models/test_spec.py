from pathlib import Path

import pytest

from openparity.models import open_model, resolve_model
from openparity.models.catalog import load_catalog
from openparity.models.errors import MissingAPIKeyError, ModelConfigError, UnknownModelError
from openparity.models.prices import builtin_price
from openparity.models.spec import parse_spec


def test_embedded_local_spec():
    spec = parse_spec("local:smollm2-135m")
    assert (spec.backend, spec.model, spec.price.input_per_mtok) == ("local", "smollm2-135m", 0.0)


def test_gguf_path_spec(tmp_path):
    path = tmp_path / "tiny.gguf"
    path.write_bytes(b"GGUF")
    spec = parse_spec(f"local:{path}")
    assert spec.model == str(path.resolve())


def test_missing_gguf_path_is_a_clear_error(tmp_path):
    with pytest.raises(UnknownModelError, match="GGUF file not found"):
        parse_spec(f"local:{tmp_path}/nope.gguf")


def test_hosted_openai_spec_needs_a_key_and_has_a_dated_price(monkeypatch):
    spec = parse_spec("openai:gpt-4o-2024-08-06")
    assert spec.base_url == "https://api.openai.com/v1"
    assert spec.price == builtin_price("gpt-4o") and spec.price.as_of
    with pytest.raises(MissingAPIKeyError, match=r"\$OPENAI_API_KEY"):
        spec.api_key()
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    assert spec.api_key() == "sk-test"
    assert "sk-test" not in repr(spec)


def test_self_hosted_spec_needs_no_key_and_is_unpriced():
    spec = parse_spec("openai:qwen2.5-7b@http://127.0.0.1:8000/v1/")
    assert (spec.model, spec.base_url, spec.api_key(), spec.price) == (
        "qwen2.5-7b",
        "http://127.0.0.1:8000/v1",
        None,
        None,
    )


def test_variant_names_are_not_priced_as_their_family():
    assert builtin_price("gpt-4o-audio-preview") is None
    assert builtin_price("deepseek-chat-0324") == builtin_price("deepseek-chat")


@pytest.mark.parametrize(
    ("text", "error", "fragment"),
    [
        ("gpt4", UnknownModelError, "unknown model 'gpt4'"),
        ("anthropic:claude", UnknownModelError, "unknown backend 'anthropic'"),
        ("local:llama-70b", UnknownModelError, "embedded models: smollm2-135m"),
        ("openai:m@ftp://x", ModelConfigError, "not an http(s) URL"),
    ],
)
def test_bad_specs_say_what_to_do(text, error, fragment):
    with pytest.raises(error) as info:
        parse_spec(text)
    assert fragment in info.value.one_line()
    assert "\n" not in info.value.one_line()


MODELS_YAML = """
models:
  gpt4o:
    spec: openai:gpt-4o
    price: {input: 2.0, output: 8.0, source: "our contract"}
  qwen-vllm:
    backend: openai
    model: Qwen/Qwen2.5-7B-Instruct
    base_url: http://127.0.0.1:8000/v1
    api_key_env: VLLM_KEY
    max_concurrency: 64
  小模型:
    backend: local
    model: smollm2-135m
    n_ctx: 2048
"""


def test_models_yaml_names_overrides_and_unicode(tmp_path, monkeypatch):
    (tmp_path / "models.yaml").write_text(MODELS_YAML, encoding="utf-8")
    catalog = load_catalog()  # ./models.yaml
    gpt = catalog.resolve("gpt4o")
    assert (gpt.name, gpt.price.input_per_mtok, gpt.price.source) == ("gpt4o", 2.0, "our contract")
    assert gpt.cost(1_000_000, 500_000) == pytest.approx(6.0)
    qwen = catalog.resolve("qwen-vllm")
    assert (qwen.base_url, qwen.api_key_env, qwen.max_concurrency) == (
        "http://127.0.0.1:8000/v1",
        "VLLM_KEY",
        64,
    )
    assert catalog.resolve("小模型").n_ctx == 2048
    assert catalog.resolve("local:smollm2-135m").backend == "local"  # inline specs still work
    with pytest.raises(UnknownModelError, match=r"names in models\.yaml: gpt4o, qwen-vllm"):
        catalog.resolve("gpt5")


def test_api_key_file(tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text("sk-from-file\n")
    (tmp_path / "m.yaml").write_text(
        f"models:\n  a:\n    spec: openai:gpt-4o\n    api_key_file: {key_file}\n"
    )
    assert load_catalog(tmp_path / "m.yaml").resolve("a").api_key() == "sk-from-file"


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("models: [1, 2", "is not valid YAML"),
        # the quote opened on line 3 is never closed: the parser notices at the end (line 6)
        (
            'models:\n  a:\n    spec: "openai:gpt-4o\n    n_ctx: 4\n  b: {}\n',
            "models.yaml: line 3 is not valid YAML",
        ),
        ("models:\n  a:\n    spec: openai:gpt-4o\n    prise: 3\n", "models.a.prise: Extra inputs"),
        ("models:\n  a:\n    backend: openai\n", "give either 'spec' or both"),
        ("models:\n  a:\n    spec: foo:bar\n", "models.a: unknown backend 'foo'"),
        ("models:\n  a:\n    backend: tgi\n    model: x\n", "unknown backend 'tgi'"),
        ("models:\n  a:\n    spec: openai:x\n    price: {input: -1, output: 1}\n", "greater than"),
    ],
)
def test_malformed_models_yaml_is_one_clear_line(tmp_path, content, fragment):
    path = tmp_path / "models.yaml"
    path.write_text(content)
    with pytest.raises(ModelConfigError) as info:
        load_catalog(path)
    assert fragment in info.value.one_line()
    assert str(path) in info.value.one_line()


def test_explicit_missing_models_file(tmp_path):
    with pytest.raises(ModelConfigError, match="models file not found"):
        load_catalog(tmp_path / "absent.yaml")


def test_env_var_points_at_models_file(tmp_path, monkeypatch):
    path = tmp_path / "elsewhere.yaml"
    path.write_text(MODELS_YAML, encoding="utf-8")
    monkeypatch.setenv("OPENPARITY_MODELS", str(path))
    assert resolve_model("qwen-vllm").model == "Qwen/Qwen2.5-7B-Instruct"


def test_open_model_fails_fast_without_key():
    with pytest.raises(MissingAPIKeyError):
        open_model("deepseek:deepseek-chat")


def test_examples_models_yaml_is_valid(monkeypatch):
    example = Path(__file__).parents[2] / "examples" / "models.yaml"
    assert load_catalog(example).models
