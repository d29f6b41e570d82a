import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _float32_policy():
    """Every test starts and ends under the float32 policy, whatever it changed."""
    keras.mixed_precision.set_global_policy("float32")
    yield
    keras.mixed_precision.set_global_policy("float32")


# The tests marked slow (tens of seconds each) run first, then the files that take longest (minutes on
# 2 cores), so that `pytest -n 2 --dist load` hands them out before the many short ones and both
# workers finish together.
SLOW_FILES_FIRST = ("test_pages.py", "test_study_variants.py", "test_multiprocess.py", "test_study_shards.py",
                    "test_study.py", "test_convert.py")


# Tests whose id names a channels-first layout are data-format tests (`-m data_format`): `make test`
# runs them a second time with TF_ENABLE_ONEDNN_OPTS=0, where TensorFlow's CPU kernels take NHWC only.
DATA_FORMAT_WORDS = ("nchw", "channels_first", "channels-first")


@pytest.hookimpl(tryfirst=True)  # before `-m` selects by marker
def pytest_collection_modifyitems(config, items):
    for item in items:
        if any(word in item.nodeid.lower() for word in DATA_FORMAT_WORDS):
            item.add_marker(pytest.mark.data_format)

    def rank(item):
        name = item.path.name
        in_file = SLOW_FILES_FIRST.index(name) if name in SLOW_FILES_FIRST else len(SLOW_FILES_FIRST)
        return item.get_closest_marker("slow") is None, in_file

    items.sort(key=rank)  # stable: the order within a file is kept
