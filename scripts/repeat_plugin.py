"""pytest plugin: run every selected test --repeat N times in one session (shared fixtures
computed once). Used by scripts/stress_resume.sh."""


def pytest_addoption(parser):
    parser.addoption("--repeat", type=int, default=1)


def pytest_generate_tests(metafunc):
    count = metafunc.config.getoption("repeat")
    if count > 1:
        metafunc.fixturenames.append("repeat_index")
        metafunc.parametrize("repeat_index", range(count))
