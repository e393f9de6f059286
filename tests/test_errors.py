"""Every error flowerlib raises for the user shares one base class."""

import importlib
import inspect
import pkgutil

import pytest

import flowerlib
from flowerlib.errors import FlowerlibError


def _public_exceptions():
    for info in pkgutil.iter_modules(flowerlib.__path__, "flowerlib."):
        if info.name == "flowerlib.__main__":
            continue  # running it is its only job
        module = importlib.import_module(info.name)
        for name, obj in inspect.getmembers(module, inspect.isclass):
            if (
                obj.__module__ == module.__name__
                and not name.startswith("_")
                and issubclass(obj, BaseException)
                and not issubclass(obj, Warning)
            ):
                yield obj


def test_the_walk_finds_the_errors_of_every_module():
    names = {cls.__name__ for cls in _public_exceptions()}
    assert {"ConfigError", "DownloadError", "TrainError", "CommandError", "EvaluationError"} <= names


@pytest.mark.parametrize(
    "cls", list(_public_exceptions()), ids=lambda cls: f"{cls.__module__}.{cls.__name__}"
)
def test_every_public_exception_subclasses_flowerlib_error(cls):
    assert issubclass(cls, FlowerlibError)


def test_errors_keep_their_builtin_bases():
    from flowerlib import config, evaluate, splits

    assert issubclass(config.ConfigError, ValueError)
    assert issubclass(splits.DatasetNotReadyError, FileNotFoundError)
    assert issubclass(evaluate.ModelNotFoundError, FileNotFoundError)
    assert flowerlib.FlowerlibError is FlowerlibError
