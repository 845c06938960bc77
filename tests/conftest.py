"""Fixtures shared by the test modules; and no test reaches a model hub (set before huggingface_hub loads)."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import pytest  # noqa: E402
from query_corpus import Corpus, build_corpus  # noqa: E402

import runtime.model.cpu  # noqa: E402
from runtime.search.index import Index  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def avx2_cpu(tmp_path_factory):
    """Every test sees an AVX2-only CPU (so `auto` = fp32 on CPU) unless it fakes VNNI (test_int8.py)."""
    cpuinfo = tmp_path_factory.mktemp("cpu") / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma\n")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(runtime.model.cpu, "CPUINFO", cpuinfo)
        yield


@pytest.fixture(scope="module")
def built(tmp_path_factory, request) -> Corpus:
    """Real tunes embedded and indexed once a test module: its CORPUS_FILES, else query_corpus's default."""
    files = getattr(request.module, "CORPUS_FILES", None)
    return build_corpus(tmp_path_factory.mktemp("corpus"), *([files] if files else []))


@pytest.fixture(scope="module")
def index(built) -> Index:
    """The built corpus's index (its model comes from the manifest)."""
    return Index.open(built.index_dir)
