"""progress=: a tqdm bar over chunks, on demand or for slow runs on a terminal."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import fastjac
from fastjac._engine import pipeline

# 2 points x (300 + 300) x 8 bytes = 9600 bytes per direction: 2 per chunk,
# so 150 chunks.
X = np.linspace(-1, 1, 300)
OPTS = dict(max_memory=20_000)


def test_progress_true_prints_a_bar_to_stderr(capfd):
    J = fastjac.jacobian(np.sin, X, progress=True, **OPTS)
    out, err = capfd.readouterr()
    assert out == ""
    assert "fastjac" in err and "chunk" in err and "150" in err
    np.testing.assert_array_equal(J, fastjac.jacobian(np.sin, X, progress=False, **OPTS))


def test_progress_true_with_an_executor(capfd):
    with ThreadPoolExecutor(2) as ex:
        fastjac.jacobian(np.sin, X, progress=True, executor=ex, **OPTS)
    err = capfd.readouterr().err
    assert "fastjac" in err and "150" in err


@pytest.mark.parametrize("progress", ["auto", False])
def test_auto_and_false_are_silent_off_a_terminal(capfd, monkeypatch, progress):
    # Pretend every chunk is slow: "auto" must still stay silent in a pipe.
    monkeypatch.setattr(pipeline.time, "perf_counter", _fake_clock())
    fastjac.jacobian(np.sin, X, progress=progress, **OPTS)
    assert capfd.readouterr().err == ""


def test_auto_shows_when_slow_on_a_terminal(monkeypatch):
    class Tty:
        def isatty(self):
            return True

    monkeypatch.setattr(pipeline.sys, "stderr", Tty())
    assert pipeline.progress_bar("auto", 100, 0.001) is None  # 0.1 s estimated: silent
    monkeypatch.setattr("tqdm.auto.tqdm", lambda **kw: kw)
    assert pipeline.progress_bar("auto", 100, 0.05)["total"] == 100  # 5 s estimated


def test_bad_progress_value():
    with pytest.raises(ValueError, match=r"`progress` must be one of \['auto', True, False\]; got 'yes'"):
        fastjac.jacobian(np.sin, X, progress="yes", **OPTS)


def _fake_clock():
    t = [0.0]

    def clock():
        t[0] += 10.0
        return t[0]
    return clock
