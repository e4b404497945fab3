"""Admin's message rates: samples are kept per object, and those of objects no longer asked about
are forgotten, so queues and connections that come and go do not pile up samples."""

from __future__ import annotations

from amqp_broker.broker.admin import Admin
from amqp_broker.broker.broker import Broker


def test_samples_of_objects_no_longer_asked_about_are_dropped():
    admin = Admin(Broker())
    admin.add_vhost("gone")
    admin.vhost("gone")
    admin.vhost("/")
    assert {("vhost", "gone"), ("vhost", "/")} <= set(admin._samples)
    admin.delete_vhost("gone")
    # A window on: "gone" was last sampled 30 s ago; "/" is asked about again now.
    for samples in admin._samples.values():
        samples[:] = [(at - 30.0, totals) for at, totals in samples]
    admin._pruned_at -= 11.0
    stats = admin.vhost("/")["message_stats"]
    assert stats["publish"] == 0 and stats["publish_details"] == {"rate": 0.0}
    assert ("vhost", "gone") not in admin._samples
    assert ("vhost", "/") in admin._samples
