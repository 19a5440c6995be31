"""The stream helpers live in ``tests/helpers/streams.py`` (import ``helpers.streams``); this
module keeps ``from streams import ...`` working for the tests of this folder meanwhile."""

from helpers.streams import *  # noqa: F403
from helpers.streams import __all__  # noqa: F401
