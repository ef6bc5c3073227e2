import signal

import pytest

from helpers import Server, model_params


def pytest_configure(config) -> None:
    config.addinivalue_line(
        "markers",
        "acceptance: the independent black-box suite (tests/contract/): what it checks that the"
        " conformance suite does not; `-m 'not acceptance'` leaves it out",
    )
    # Servers inherit ignored signals through exec; run them as from a terminal
    # (a shell that starts us in the background ignores SIGINT).
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if signal.getsignal(signal.SIGTERM) == signal.SIG_IGN:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


@pytest.fixture(params=model_params())
def model(request) -> str:
    """Each registered model; unavailable ones skip with the registry's reason."""
    return request.param


@pytest.fixture(scope="module", params=model_params())
def echo_server(request):
    """One echo server per model, shared by the tests of a module that do not fault it."""
    with Server(request.param, protocol="echo") as server:
        yield server


@pytest.fixture(scope="module", params=model_params())
def upper_server(request):
    with Server(request.param, protocol="upper") as server:
        yield server
