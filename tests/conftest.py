import pytest

from helpers import Server, model_params


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
