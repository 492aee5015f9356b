"""The reset channel between gateways serving one image (storage/rbd_events.py, issue #15), with
two connections to the cluster standing for two gateways: a reset announced by one reaches the
other only, a watch that fails is re-established (and, having maybe missed one, applies a reset),
a closed backend stops watching, a failed announcement is a WARNING once and never an exception,
and removing an image the target created removes its events object."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import pytest

from pyscsi_target.storage import RbdBackend, RbdCluster, rbd_events
from pyscsi_target.storage.rbd_events import events_object

from .cluster import POOL, CephCluster
from .fixtures import image_name

BS = 512
#: how long a callback on a librados thread may take to arrive, seconds
ARRIVAL_S = 10.0


class Resets:
    """Counts the resets a backend's watch delivers (on librados threads)."""

    def __init__(self) -> None:
        self.count = 0
        self._cond = threading.Condition()

    def __call__(self) -> None:
        with self._cond:
            self.count += 1
            self._cond.notify_all()

    def wait_for(self, n: int) -> None:
        with self._cond:
            assert self._cond.wait_for(lambda: self.count >= n, ARRIVAL_S), (self.count, n)


@pytest.fixture
def two(ceph_cluster: CephCluster, rbd_cluster: RbdCluster) -> Iterator[tuple[RbdBackend, RbdBackend, str]]:
    """The same new image opened through two connections: gateways A and B."""
    other = RbdCluster(str(ceph_cluster.conf))
    other.connect()
    image = image_name("events")
    rbd_cluster.create_image(POOL, image, 1 << 20)
    a = rbd_cluster.open(POOL, image, BS, False)
    b = other.open(POOL, image, BS, False)
    try:
        yield a, b, image
    finally:
        a.close()
        b.close()
        other.close()
        rbd_cluster.remove_image(POOL, image)


def test_a_reset_reaches_the_other_gateway_only(two: tuple[RbdBackend, RbdBackend, str]) -> None:
    a, b, _ = two
    at_a, at_b = Resets(), Resets()
    a.watch_resets(at_a)
    b.watch_resets(at_b)
    assert a.announce_reset() is True
    assert at_b.count == 1  # applied before the notify's acknowledgement: already there
    assert b.announce_reset() is True
    assert at_a.count == 1
    assert (at_a.count, at_b.count) == (1, 1)  # neither heard its own


def test_a_failed_watch_is_re_established(two: tuple[RbdBackend, RbdBackend, str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    a, b, _ = two
    monkeypatch.setattr(rbd_events, "WATCH_RETRY_S", 0.1)
    at_b = Resets()
    a.watch_resets(Resets())
    b.watch_resets(at_b)
    assert b.events is not None
    b.events._watch_error(0, -107)  # what librados calls when the OSD dropped the watch (ENOTCONN)
    at_b.wait_for(1)  # re-established, it applies the reset it may have missed
    assert b.events.watching
    assert a.announce_reset() is True
    assert at_b.count == 2  # and the new watch hears the next one


def test_a_closed_backend_stops_watching(two: tuple[RbdBackend, RbdBackend, str]) -> None:
    a, b, _ = two
    at_b = Resets()
    a.watch_resets(Resets())
    b.watch_resets(at_b)
    b.close()
    assert a.announce_reset() is True
    assert at_b.count == 0


def test_a_failed_announcement_warns_once_and_never_raises(two: tuple[RbdBackend, RbdBackend, str],
                                                           caplog: pytest.LogCaptureFixture) -> None:
    a, _, _ = two
    a.watch_resets(Resets())
    a.close()
    caplog.set_level(logging.DEBUG, "pyscsi_target.storage")
    assert a.announce_reset() is False
    assert a.announce_reset() is False
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "could not be told to the other gateways" in warnings[0].getMessage()


def test_removing_an_image_removes_its_events_object(rbd_cluster: RbdCluster) -> None:
    image = image_name("events")
    rbd_cluster.create_image(POOL, image, 1 << 20)
    backend = rbd_cluster.open(POOL, image, BS, False)
    image_id = backend.identity[1]
    backend.watch_resets(Resets())
    backend.close()
    ctx = rbd_cluster.ioctx(POOL)
    assert ctx.stat(events_object(image_id))  # created by the watch
    rbd_cluster.remove_image(POOL, image)
    with pytest.raises(Exception, match="not found"):
        ctx.stat(events_object(image_id))
